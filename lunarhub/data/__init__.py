"""The national data sites (storage servers, access policy), catalogs, the sites' data build, PDS readers.
"""
