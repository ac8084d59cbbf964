// lunarhub's JupyterLab extension: the Data, Publish and Compute-limits side panels and the
// notebook toolbar's Publish button. Every string goes through JupyterLab's translator
// (gettext domain "lunarhub_lab", catalogs in lunarhub_lab/locale/).
import {
  ILabShell,
  ILayoutRestorer,
  JupyterFrontEnd,
  JupyterFrontEndPlugin
} from '@jupyterlab/application';
import { ToolbarButton } from '@jupyterlab/apputils';
import { DocumentRegistry } from '@jupyterlab/docregistry';
import { INotebookModel, INotebookTracker, NotebookPanel } from '@jupyterlab/notebook';
import { ITranslator, nullTranslator, TranslationBundle } from '@jupyterlab/translation';
import { IDisposable } from '@lumino/disposable';

import { DOMAIN } from './api';
import { ComputePanel } from './compute';
import { DataPanel } from './data';
import { publishIcon } from './icons';
import { PublishPanel } from './publish';

/** How long a save may take before the panel says it did not happen. */
const SAVE_MS = 30000;

/** Save `panel` before publishing: refused, with a reason, when its document has not loaded. A
 * collaborative document (jupyter-collaboration) is written to disk by the server's room on its
 * own, and its save request can go unanswered (the panel then waited forever: the publish run never
 * started): an unchanged document is not saved again, and a save that does not end in SAVE_MS is
 * reported instead of waited for. */
function saverFor(panel: NotebookPanel, trans: TranslationBundle): () => Promise<void> {
  return async () => {
    const context = panel.context;
    if (!context.isReady) {
      throw new Error(trans.__('the notebook has not finished loading: reload the page and try again'));
    }
    if (!context.model.dirty) {
      return;
    }
    let timer = 0;
    const late = new Promise<never>((_, reject) => {
      timer = window.setTimeout(
        () => reject(new Error(trans.__('the notebook was not saved within %1 s: save it and publish again', SAVE_MS / 1000))),
        SAVE_MS
      );
    });
    try {
      await Promise.race([context.save(), late]);
    } finally {
      window.clearTimeout(timer);
    }
  };
}

const plugin: JupyterFrontEndPlugin<void> = {
  id: 'lunarhub-lab:plugin',
  description: 'The data sites, dashboards and dask limits of lunarhub in side panels',
  autoStart: true,
  requires: [INotebookTracker],
  optional: [ITranslator, ILayoutRestorer, ILabShell],
  activate: (
    app: JupyterFrontEnd,
    tracker: INotebookTracker,
    translator: ITranslator | null,
    restorer: ILayoutRestorer | null
  ) => {
    const tr = translator || nullTranslator;
    const trans = tr.load(DOMAIN);
    const data = new DataPanel(tr, tracker);
    const publish = new PublishPanel(tr);
    const compute = new ComputePanel(tr);
    app.shell.add(data, 'left', { rank: 150 });
    app.shell.add(compute, 'left', { rank: 160 });
    app.shell.add(publish, 'right', { rank: 150 });
    if (restorer) {
      restorer.add(data, data.id);
      restorer.add(publish, publish.id);
      restorer.add(compute, compute.id);
    }
    void data.load();
    void publish.refresh();
    void compute.refresh();

    app.commands.addCommand('lunarhub-lab:publish', {
      label: trans.__('Publish as dashboard'),
      caption: trans.__('Publish this notebook as a dashboard'),
      icon: publishIcon,
      execute: () => {
        const panel = tracker.currentWidget;
        if (panel) {
          publish.setNotebook(panel.context.path, saverFor(panel, trans));
        }
        app.shell.activateById(publish.id);
        void publish.refresh();
      }
    });

    class PublishButton implements DocumentRegistry.IWidgetExtension<NotebookPanel, INotebookModel> {
      createNew(panel: NotebookPanel): IDisposable {
        const button = new ToolbarButton({
          className: 'lh-publish-button',
          icon: publishIcon,
          label: trans.__('Publish'),
          tooltip: trans.__('Publish this notebook as a dashboard'),
          onClick: () => {
            publish.setNotebook(panel.context.path, saverFor(panel, trans));
            app.shell.activateById(publish.id);
            void publish.refresh();
          }
        });
        panel.toolbar.insertItem(10, 'lunarhubPublish', button);
        return button;
      }
    }
    app.docRegistry.addWidgetExtension('Notebook', new PublishButton());
  }
};

export default plugin;
