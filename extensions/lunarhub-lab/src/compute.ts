// What dask-labextension lacks: the group's dask limits, next to its cluster list.
import { ITranslator, TranslationBundle } from '@jupyterlab/translation';
import { Widget } from '@lumino/widgets';

import { DOMAIN, el, requestAPI } from './api';
import { computeIcon } from './icons';

interface ILimits {
  limits: { [k: string]: number } | null;
  where?: { [k: string]: string };
  notice?: string;
}

export class ComputePanel extends Widget {
  constructor(translator: ITranslator) {
    super();
    const trans = (this._trans = translator.load(DOMAIN));
    this.id = 'lunarhub-compute';
    this.addClass('lh-panel');
    this.addClass('lh-compute');
    this.title.icon = computeIcon;
    this.title.caption = trans.__('Dask limits of your groups');
    el('h2', 'lh-heading', trans.__('Dask limits of your groups'), this.node);
    this._body = el('div', 'lh-limits', undefined, this.node);
    el('p', 'lh-hint', trans.__('Start, scale and stop clusters in the Dask panel; a request over a limit is refused naming it.'), this.node);
  }

  async refresh(): Promise<void> {
    const trans = this._trans;
    this._body.textContent = '';
    let data: ILimits;
    try {
      data = await requestAPI<ILimits>('compute');
    } catch (err) {
      el('div', 'lh-error', String(err), this._body);
      return;
    }
    if (!data.limits) {
      el('div', undefined, trans.__('None of your groups may start dask clusters.'), this._body);
      return;
    }
    const labels: [string, string][] = [
      ['max_clusters', trans.__('Clusters at once')],
      ['max_workers', trans.__('Workers per cluster')],
      ['max_cores', trans.__('Cores of all your clusters')],
      ['max_memory_gb', trans.__('Memory of all your clusters (GB)')]
    ];
    const dl = el('dl', 'lh-entry-fields', undefined, this._body);
    for (const [key, label] of labels) {
      el('dt', undefined, label, dl);
      const dd = el('dd', undefined, String(data.limits[key]), dl);
      dd.dataset.limit = key;
      if (data.where?.[key]) {
        dd.title = data.where[key];
      }
    }
  }

  private _trans: TranslationBundle;
  private _body: HTMLElement;
}
