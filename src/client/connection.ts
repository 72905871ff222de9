// What the admin client needs to reach a divert serve's admin API; the CLI (cli/connection.ts) fills it from flags, variables and the token file.

export interface Connection {
  /** Base URL of the admin API, always ending in "/" so that paths resolve below it. */
  url: URL;
  token: string;
  /** Where the token came from, named in the hint of a 401. */
  tokenSource: string;
  /** Sent as X-Divert-Client, so the history says who made a change. */
  client: string;
}
