// The token: asked once on the login form, checked against the API before it is kept,
// and kept in sessionStorage only (gone with the tab; never a cookie, never in a URL).

import { Api, ApiError } from './api.js';
import { byId, say } from './dom.js';

const KEY = 'divert-admin-token';

export function storedToken(): string | null {
  return sessionStorage.getItem(KEY);
}

export function forgetToken(): void {
  sessionStorage.removeItem(KEY);
}

/** Whether the API takes `token`; throws what it answered otherwise. */
async function check(token: string): Promise<Api> {
  const api = new Api(token);
  await api.listNames('', undefined, 1);
  return api;
}

/** Resolves with an API client once a token is accepted: the stored one, else one typed in. */
export function signIn(reason = ''): Promise<Api> {
  const form = byId<HTMLFormElement>('login-form');
  const input = byId<HTMLInputElement>('token');
  const message = byId('login-message');
  byId('login').hidden = false;
  say(message, reason, reason ? 'error' : 'note');
  input.value = '';
  input.focus();
  return new Promise((resolve) => {
    const submit = async (event: SubmitEvent) => {
      event.preventDefault();
      const token = input.value.trim();
      if (!token) return;
      say(message, 'Checking…');
      try {
        const api = await check(token);
        sessionStorage.setItem(KEY, token);
        input.value = '';
        form.removeEventListener('submit', listener);
        byId('login').hidden = true;
        say(message, '');
        resolve(api);
      } catch (err) {
        const refused = err instanceof ApiError && err.status === 401;
        say(
          message,
          refused ? 'Token refused: that is not this server’s admin token.' : `Could not sign in: ${(err as Error).message}`,
          'error',
        );
      }
    };
    const listener = (event: SubmitEvent) => void submit(event);
    form.addEventListener('submit', listener);
  });
}

/** The stored token's client, if the API still takes it. */
export async function resume(): Promise<Api | null> {
  const token = storedToken();
  if (!token) return null;
  try {
    return await check(token);
  } catch {
    forgetToken();
    return null;
  }
}
