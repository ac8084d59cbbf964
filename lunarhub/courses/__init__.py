"""Instructors' courses: rosters and tutorial copies.
"""
