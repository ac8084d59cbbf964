// The Publish panel: lunarhub.dashboards.publishing.actions.publish run by the server extension
// (lunarhub.lab.publish_jobs), its progress, its refusal (cell and error) or links, and the
// user's dashboards.
import { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { DOMAIN, el, pick, requestAPI, Texts, uiLanguage } from './api';
import { publishIcon } from './icons';

interface IAudience {
  name: string;
  via: string[];
  description: Texts;
}

interface IJob {
  id: string;
  state: 'running' | 'done' | 'refused';
  cell: number | null;
  error?: string;
  detail?: string;
  result?: { title: string; version: number; url: string; gallery_url: string; thumbnail_error?: string };
}

interface IDashboard {
  slug: string;
  title: string;
  version: number;
  versions: number[];
  url: string;
  gallery_url: string;
  share_groups: string[];
  comments?: number;
}

const POLL_MS = 700;

export class PublishPanel extends Widget {
  constructor(translator: ITranslator) {
    super();
    const trans = (this._trans = translator.load(DOMAIN));
    this._lang = uiLanguage(translator);
    this.id = 'lunarhub-publish';
    this.addClass('lh-panel');
    this.addClass('lh-publish');
    this.title.icon = publishIcon;
    this.title.caption = trans.__('Publish a dashboard');
    el('h2', 'lh-heading', trans.__('Publish a dashboard'), this.node);
    const form = el('div', 'lh-form', undefined, this.node);
    el('label', undefined, trans.__('Notebook'), form);
    this._path = el('div', 'lh-publish-path', trans.__('Open a notebook and press Publish in its toolbar.'), form);
    el('label', undefined, trans.__('Title'), form);
    this._title = el('input', 'lh-publish-title jp-mod-styled', undefined, form) as HTMLInputElement;
    el('label', undefined, trans.__('Description'), form);
    this._desc = el('textarea', 'lh-publish-description jp-mod-styled', undefined, form) as HTMLTextAreaElement;
    this._desc.rows = 3;
    el('label', undefined, trans.__('Share with'), form);
    this._audiences = el('div', 'lh-publish-audiences', undefined, form);
    this._button = el('button', 'lh-publish-go jp-mod-styled jp-mod-accept', trans.__('Publish'), form) as HTMLButtonElement;
    this._button.addEventListener('click', () => void this.publish());
    el('p', 'lh-hint', trans.__('The notebook runs once as you first; sharing follows the data it reads.'), form);
    this._status = el('div', 'lh-publish-status', undefined, this.node);
    el('h3', 'lh-heading', trans.__('My dashboards'), this.node);
    this._mine = el('div', 'lh-publish-mine', undefined, this.node);
  }

  /** Show the panel for `path` (relative to the server root), called by the toolbar button.
   * `saver` saves the open document first; it throws when the document never loaded. */
  setNotebook(path: string, saver?: () => Promise<void>): void {
    this._notebook = path;
    this._saver = saver;
    this._path.textContent = path;
    if (!this._title.value) {
      this._title.value = (path.split('/').pop() || '').replace(/\.ipynb$/, '');
    }
  }

  async refresh(): Promise<void> {
    const trans = this._trans;
    try {
      const opts = await requestAPI<{ audiences: IAudience[]; notice?: string }>('publish/options');
      this._audiences.textContent = '';
      if (!opts.audiences.length) {
        el('div', 'lh-hint', trans.__('The deployment lets you share with nobody; the dashboard stays yours.'), this._audiences);
      }
      for (const a of opts.audiences) {
        const row = el('label', 'lh-audience', undefined, this._audiences);
        const box = el('input', undefined, undefined, row) as HTMLInputElement;
        box.type = 'checkbox';
        box.value = a.name;
        box.checked = a.name === 'reviewers';
        el('span', undefined, ` ${a.name}`, row);
        const d = pick(a.description, this._lang);
        if (d) {
          el('span', 'lh-hint', ` — ${d}`, row);
        }
      }
    } catch (err) {
      this._audiences.textContent = trans.__('Cannot ask whom you may share with: %1', String(err));
    }
    await this.refreshMine();
  }

  async refreshMine(): Promise<void> {
    const trans = this._trans;
    this._mine.textContent = '';
    let data: { dashboards: IDashboard[]; error?: string };
    try {
      data = await requestAPI('dashboards');
    } catch (err) {
      el('div', 'lh-error', String(err), this._mine);
      return;
    }
    if (data.error) {
      el('div', 'lh-error', trans.__('The gallery does not answer: %1', data.error), this._mine);
    }
    if (!data.dashboards.length && !data.error) {
      el('div', 'lh-hint', trans.__('None yet.'), this._mine);
    }
    for (const d of data.dashboards) {
      const row = el('div', 'lh-dashboard', undefined, this._mine);
      row.dataset.slug = d.slug;
      const a = el('a', undefined, d.title, row) as HTMLAnchorElement;
      a.href = d.gallery_url;
      a.target = '_blank';
      el('div', 'lh-hint', trans.__('versions: %1', d.versions.map(v => `v${v}`).join(', ')), row);
      el('div', 'lh-hint', trans.__('shared with: %1', d.share_groups.join(', ') || '—'), row);
      if (d.comments !== undefined) {
        el('div', 'lh-hint', trans._n('%1 comment', '%1 comments', d.comments), row);
      }
      const un = el('button', 'lh-unpublish jp-mod-styled jp-mod-warn', trans.__('Unpublish'), row);
      un.addEventListener('click', async () => {
        try {
          await requestAPI(`dashboards/${d.slug}`, { method: 'DELETE' });
        } catch (err) {
          el('div', 'lh-error', String(err), row);
          return;
        }
        await this.refreshMine();
      });
    }
  }

  async publish(): Promise<void> {
    const trans = this._trans;
    this._status.textContent = '';
    if (!this._notebook) {
      el('div', 'lh-error', trans.__('Open a notebook and press Publish in its toolbar.'), this._status);
      return;
    }
    const share = [...this._audiences.querySelectorAll('input:checked')].map(
      i => (i as HTMLInputElement).value
    );
    this._button.disabled = true;
    // Every stage says where it is: a publish that waits on something shows what.
    const progress = el('div', 'lh-progress', trans.__('Saving the notebook…'), this._status);
    try {
      if (this._saver) {
        await this._saver();
      }
      progress.textContent = trans.__('Running the notebook…');
      let job = await requestAPI<IJob>('publish', {
        method: 'POST',
        body: JSON.stringify({
          path: this._notebook,
          title: this._title.value,
          description: this._desc.value,
          share_with: share
        })
      });
      while (job.state === 'running') {
        await new Promise(r => setTimeout(r, POLL_MS));
        job = await requestAPI<IJob>(`publish/jobs/${job.id}`);
        if (job.state === 'running' && job.cell) {
          progress.textContent = trans.__('Running the notebook: cell %1…', job.cell);
        }
      }
      this._status.textContent = '';
      this._show(job);
    } catch (err) {
      this._status.textContent = '';
      el('div', 'lh-error', trans.__('Not published: %1', String(err)), this._status);
    } finally {
      this._button.disabled = false;
    }
    await this.refreshMine();
  }

  private _show(job: IJob): void {
    const trans = this._trans;
    const box = el('div', `lh-result lh-${job.state}`, undefined, this._status);
    if (job.state === 'refused') {
      el('div', 'lh-error', trans.__('Not published.'), box);
      if (job.cell) {
        el('div', 'lh-refused-cell', trans.__('Cell %1', job.cell), box);
      }
      el('pre', 'lh-refused-error', job.error || '', box);
      if (job.detail) {
        el('pre', 'lh-refused-detail', job.detail, box);
      }
      return;
    }
    const r = job.result!;
    el('div', 'lh-ok', trans.__('Published "%1" as version v%2.', r.title, r.version), box);
    const links = el('div', undefined, undefined, box);
    const open = el('a', 'lh-link-dashboard', trans.__('Open the dashboard'), links) as HTMLAnchorElement;
    open.href = r.url;
    open.target = '_blank';
    el('span', undefined, ' · ', links);
    const gal = el('a', 'lh-link-gallery', trans.__('Its gallery page'), links) as HTMLAnchorElement;
    gal.href = r.gallery_url;
    gal.target = '_blank';
    if (r.thumbnail_error) {
      el('div', 'lh-hint', trans.__('No thumbnail: %1', r.thumbnail_error), box);
    }
  }

  private _trans: TranslationBundle;
  private _lang: string;
  private _notebook = '';
  private _saver?: () => Promise<void>;
  private _path: HTMLElement;
  private _title: HTMLInputElement;
  private _desc: HTMLTextAreaElement;
  private _audiences: HTMLElement;
  private _button: HTMLButtonElement;
  private _status: HTMLElement;
  private _mine: HTMLElement;
}
