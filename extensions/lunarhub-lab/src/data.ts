// The Data side panel: both sites' catalogs as this user sees them (lunarhub.lab.catalog_view).
import { INotebookTracker, NotebookActions } from '@jupyterlab/notebook';
import { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import { MimeData } from '@lumino/coreutils';
import { Drag } from '@lumino/dragdrop';
import { Widget } from '@lumino/widgets';

import { DOMAIN, el, pick, requestAPI, Texts, uiLanguage } from './api';
import { dataIcon } from './icons';

const JUPYTER_CELL_MIME = 'application/vnd.jupyter.cells';

interface ISite {
  name: string;
  ok: boolean;
  error?: string;
  title?: Texts;
  owner: { key: string | null; name: Texts };
}

interface IEntry {
  site: string;
  name: string;
  policy: string;
  readable: boolean;
  title: Texts;
  description: Texts;
  mission?: string;
  instrument?: string;
  crs?: string;
  units?: string;
  extent?: { crs?: string; bbox?: number[] };
  citation?: string[];
  license?: string;
  code?: string;
  reason?: {
    policy: string;
    groups: string[];
    ask: Texts;
    restart?: boolean;
    embargo_until?: string;
  };
}

interface IListing {
  sites: ISite[];
  entries: IEntry[];
  notice?: string;
}

export function policyLabel(trans: TranslationBundle, policy: string): string {
  switch (policy) {
    case 'open':
      return trans._p('policy', 'open data');
    case 'partners':
      return trans._p('policy', 'partners (both institutes)');
    case 'ru-only':
      return trans._p('policy', 'Russian team only');
    case 'cn-only':
      return trans._p('policy', 'Chinese team only');
    default:
      return policy;
  }
}

export class DataPanel extends Widget {
  constructor(translator: ITranslator, tracker: INotebookTracker) {
    super();
    this._trans = translator.load(DOMAIN);
    this._lang = uiLanguage(translator);
    this._tracker = tracker;
    this.id = 'lunarhub-data';
    this.addClass('lh-panel');
    this.addClass('lh-data');
    this.title.icon = dataIcon;
    this.title.caption = this._trans.__('Lunar data: catalogs of both sites');
    const trans = this._trans;
    el('h2', 'lh-heading', trans.__('Lunar data'), this.node);
    const bar = el('div', 'lh-filters', undefined, this.node);
    this._search = el('input', 'lh-search jp-mod-styled', undefined, bar) as HTMLInputElement;
    this._search.type = 'search';
    this._search.placeholder = trans.__('Search title, description, mission…');
    this._site = this._select(bar, 'lh-filter-site', trans.__('All sites'));
    this._mission = this._select(bar, 'lh-filter-mission', trans.__('All missions'));
    this._instrument = this._select(bar, 'lh-filter-instrument', trans.__('All instruments'));
    this._policy = this._select(bar, 'lh-filter-policy', trans.__('All policies'));
    const refresh = el('button', 'lh-refresh jp-mod-styled', trans.__('Refresh'), bar);
    refresh.addEventListener('click', () => void this.load());
    this._search.addEventListener('input', () => this.render());
    this._status = el('div', 'lh-status', undefined, this.node);
    this._list = el('div', 'lh-entries', undefined, this.node);
  }

  private _select(parent: HTMLElement, cls: string, all: string): HTMLSelectElement {
    const s = el('select', `${cls} jp-mod-styled`, undefined, parent) as HTMLSelectElement;
    const o = el('option', undefined, all, s) as HTMLOptionElement;
    o.value = '';
    s.addEventListener('change', () => this.render());
    return s;
  }

  private _fill(s: HTMLSelectElement, values: [string, string][]): void {
    const keep = s.value;
    while (s.options.length > 1) {
      s.remove(1);
    }
    for (const [value, label] of values) {
      const o = el('option', undefined, label, s) as HTMLOptionElement;
      o.value = value;
    }
    s.value = values.some(v => v[0] === keep) ? keep : '';
  }

  async load(): Promise<void> {
    this._status.textContent = this._trans.__('Loading the catalogs…');
    try {
      this._data = await requestAPI<IListing>('catalog');
    } catch (err) {
      this._data = null;
      this._status.textContent = this._trans.__('The catalogs cannot be listed: %1', String(err));
      return;
    }
    const uniq = (xs: (string | undefined)[]) =>
      [...new Set(xs.filter(x => !!x) as string[])].sort();
    const entries = this._data.entries;
    this._fill(
      this._site,
      this._data.sites.map(s => [s.name, pick(s.title, this._lang) || s.name])
    );
    this._fill(this._mission, uniq(entries.map(e => e.mission)).map(m => [m, m]));
    this._fill(this._instrument, uniq(entries.map(e => e.instrument)).map(m => [m, m]));
    this._fill(
      this._policy,
      uniq(entries.map(e => e.policy)).map(p => [p, policyLabel(this._trans, p)])
    );
    this.render();
  }

  private _matches(e: IEntry): boolean {
    const q = this._search.value.trim().toLowerCase();
    if (this._site.value && e.site !== this._site.value) {
      return false;
    }
    if (this._mission.value && e.mission !== this._mission.value) {
      return false;
    }
    if (this._instrument.value && e.instrument !== this._instrument.value) {
      return false;
    }
    if (this._policy.value && e.policy !== this._policy.value) {
      return false;
    }
    if (!q) {
      return true;
    }
    const hay = [
      e.name,
      ...Object.values(e.title || {}),
      ...Object.values(e.description || {}),
      e.mission,
      e.instrument,
      e.site
    ]
      .join(' ')
      .toLowerCase();
    return hay.includes(q);
  }

  render(): void {
    const trans = this._trans;
    this._status.textContent = '';
    this._list.textContent = '';
    if (!this._data) {
      return;
    }
    if (this._data.notice) {
      el('div', 'lh-notice', trans.__('Refusal reasons are limited: %1', this._data.notice), this._status);
    }
    for (const s of this._data.sites) {
      if (!s.ok) {
        const box = el('div', 'lh-site-error', undefined, this._status);
        box.dataset.site = s.name;
        el('b', undefined, trans.__('Site %1 cannot be reached.', s.name), box);
        el('div', 'lh-site-error-detail', s.error || '', box);
        el('div', undefined, trans.__('The other sites are listed below.'), box);
      }
    }
    const shown = this._data.entries.filter(e => this._matches(e));
    el(
      'div',
      'lh-count',
      trans._n('%1 dataset', '%1 datasets', shown.length),
      this._status
    );
    // Readable first, then by site and title.
    shown.sort(
      (a, b) =>
        Number(b.readable) - Number(a.readable) ||
        a.site.localeCompare(b.site) ||
        pick(a.title, this._lang).localeCompare(pick(b.title, this._lang))
    );
    for (const e of shown) {
      this._list.appendChild(this._card(e));
    }
  }

  private _card(e: IEntry): HTMLElement {
    const trans = this._trans;
    const lang = this._lang;
    const card = el('div', e.readable ? 'lh-entry' : 'lh-entry lh-locked');
    card.dataset.site = e.site;
    card.dataset.entry = e.name;
    card.dataset.readable = String(e.readable);
    el('div', 'lh-entry-title', pick(e.title, lang) || e.name, card);
    const meta = el('div', 'lh-entry-meta', undefined, card);
    meta.textContent = [
      trans.__('site %1', e.site),
      e.mission,
      e.instrument,
      policyLabel(trans, e.policy)
    ]
      .filter(x => !!x)
      .join(' · ');
    el('div', 'lh-entry-desc', pick(e.description, lang), card);
    const dl = el('dl', 'lh-entry-fields', undefined, card);
    const field = (label: string, value: string | undefined) => {
      if (value) {
        el('dt', undefined, label, dl);
        el('dd', undefined, value, dl);
      }
    };
    field(trans.__('CRS'), e.crs);
    if (e.extent?.bbox) {
      field(trans.__('Extent'), `[${e.extent.bbox.join(', ')}]${e.extent.crs ? ' ' + e.extent.crs : ''}`);
    }
    field(trans.__('Units'), e.units);
    field(trans.__('License'), e.license);
    field(trans.__('Citation'), (e.citation || []).join(' '));
    if (e.readable && e.code) {
      const open = el('button', 'lh-open jp-mod-styled jp-mod-accept', trans.__('Open in notebook'), card);
      open.title = trans.__('Insert a cell that loads this dataset (lazily) into the active notebook');
      open.addEventListener('click', () => void this.insert(e.code || ''));
      card.classList.add('lh-draggable');
      card.title = trans.__('Drag into a notebook to insert the code that loads it');
      card.addEventListener('mousedown', ev => this._startDrag(ev, e.code || ''));
    } else if (e.reason) {
      const r = e.reason;
      const box = el('div', 'lh-reason', undefined, card);
      el('div', undefined, trans.__('You may not read this dataset: policy "%1".', policyLabel(trans, r.policy)), box);
      if (r.groups.length) {
        el('div', undefined, trans.__('Readable by members of: %1', r.groups.join(', ')), box);
      }
      if (pick(r.ask, lang)) {
        el('div', undefined, trans.__('Ask %1 for access.', pick(r.ask, lang)), box);
      }
      if (r.embargo_until) {
        el('div', undefined, trans.__('Embargoed until %1.', r.embargo_until), box);
      }
      if (r.restart) {
        el('div', undefined, trans.__('Your groups allow it now: restart your server to read it.'), box);
      }
    }
    return card;
  }

  async insert(code: string): Promise<void> {
    const panel = this._tracker.currentWidget;
    if (!panel) {
      this._status.textContent = this._trans.__('Open a notebook first: the code goes into a new cell there.');
      return;
    }
    const nb = panel.content;
    NotebookActions.insertBelow(nb);
    const cell = nb.activeCell;
    if (cell) {
      cell.model.sharedModel.setSource(code);
    }
    panel.activate();
  }

  private _startDrag(ev: MouseEvent, code: string): void {
    if (ev.button !== 0 || (ev.target as HTMLElement).tagName === 'BUTTON') {
      return;
    }
    const x0 = ev.clientX;
    const y0 = ev.clientY;
    const move = (m: MouseEvent) => {
      if (Math.abs(m.clientX - x0) + Math.abs(m.clientY - y0) < 6) {
        return;
      }
      cleanup();
      const mime = new MimeData();
      mime.setData(JUPYTER_CELL_MIME, [
        { cell_type: 'code', source: code, metadata: {}, outputs: [], execution_count: null }
      ]);
      const ghost = el('div', 'lh-drag-image', code.split('\n').slice(-2)[0]);
      const drag = new Drag({
        mimeData: mime,
        dragImage: ghost,
        proposedAction: 'copy',
        supportedActions: 'copy',
        source: this
      });
      void drag.start(m.clientX, m.clientY);
    };
    const cleanup = () => {
      document.removeEventListener('mousemove', move, true);
      document.removeEventListener('mouseup', cleanup, true);
    };
    document.addEventListener('mousemove', move, true);
    document.addEventListener('mouseup', cleanup, true);
  }

  private _trans: TranslationBundle;
  private _lang: string;
  private _tracker: INotebookTracker;
  private _data: IListing | null = null;
  private _search: HTMLInputElement;
  private _site: HTMLSelectElement;
  private _mission: HTMLSelectElement;
  private _instrument: HTMLSelectElement;
  private _policy: HTMLSelectElement;
  private _status: HTMLElement;
  private _list: HTMLElement;
}
