// Secrets never reach a log line or an error message: URLs are shown with their
// password replaced, and otherwise exactly as written.

/** The URL with any password (or a lone user-info part, which some clients read as one) shown as `***`. */
export function maskUrl(url: string): string {
  // user-info ends at the last '@' of the authority, which ends at the first '/', '?' or '#'
  return url.replace(/^([^:/?#]+:\/\/)([^/?#]*)@/, (_, scheme: string, userinfo: string) => {
    const colon = userinfo.indexOf(':');
    return colon === -1 ? `${scheme}***@` : `${scheme}${userinfo.slice(0, colon)}:***@`;
  });
}
