import { LabIcon } from '@jupyterlab/ui-components';

// A crescent moon over a disk: the data sites' catalogs.
export const dataIcon = new LabIcon({
  name: 'lunarhub-lab:data',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M12 2a10 10 0 1 0 10 10A8 8 0 0 1 12 2z"/><circle cx="16" cy="7" r="1.5"/><circle cx="9" cy="15" r="2"/></g></svg>'
});

// An arrow out of a tray: publish a dashboard.
export const publishIcon = new LabIcon({
  name: 'lunarhub-lab:publish',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<path d="M11 16V7.8L7.4 11.4 6 10l6-6 6 6-1.4 1.4L13 7.8V16zM4 20v-6h2v4h12v-4h2v6z"/></g></svg>'
});

// Three stacked bars: the group's dask limits.
export const computeIcon = new LabIcon({
  name: 'lunarhub-lab:compute',
  svgstr:
    '<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24" width="16"><g class="jp-icon3" fill="#616161">' +
    '<rect x="3" y="4" width="18" height="4" rx="1"/><rect x="3" y="10" width="18" height="4" rx="1"/>' +
    '<rect x="3" y="16" width="18" height="4" rx="1"/></g></svg>'
});
