// Calls to the server extension (lunarhub.lab.handlers) in this user's own server.
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';
import { ITranslator } from '@jupyterlab/translation';

export const DOMAIN = 'lunarhub_lab';

export async function requestAPI<T>(path: string, init: RequestInit = {}): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const url = URLExt.join(settings.baseUrl, 'lunarhub-lab', 'api', path);
  const response = await ServerConnection.makeRequest(url, init, settings);
  const text = await response.text();
  let data: any = {};
  try {
    data = text ? JSON.parse(text) : {};
  } catch {
    data = { message: text };
  }
  if (!response.ok) {
    throw new Error(data.message || data.error || `${response.status}`);
  }
  return data as T;
}

/** The interface language as the catalogs and the deployment name it: en, ru or zh. */
export function uiLanguage(translator: ITranslator): string {
  const code = (translator.languageCode || 'en').toLowerCase();
  if (code.startsWith('ru')) {
    return 'ru';
  }
  if (code.startsWith('zh')) {
    return 'zh';
  }
  return 'en';
}

export type Texts = { [lang: string]: string };

export function pick(texts: Texts | undefined, lang: string): string {
  if (!texts) {
    return '';
  }
  return texts[lang] || texts['en'] || Object.values(texts)[0] || '';
}

/** A DOM element with a class and text (text content only: catalog data is never HTML). */
export function el(
  tag: string,
  cls?: string,
  text?: string,
  parent?: HTMLElement
): HTMLElement {
  const node = document.createElement(tag);
  if (cls) {
    node.className = cls;
  }
  if (text !== undefined) {
    node.textContent = text;
  }
  if (parent) {
    parent.appendChild(node);
  }
  return node;
}
