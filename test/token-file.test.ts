// The admin token file is trusted only as ssh trusts a private key: `divert serve`, the CLI
// and `divert healthcheck` refuse a link, a file others may read, one of another user, one
// in a folder others may write, or a short token, each with one line naming the file and
// the fix; a 0600 file in a 0700 folder is read, and serve's first start generates one.

import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, readFileSync, statSync, symlinkSync, unlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { runDivert, type DivertProcess } from './helpers/process.js';

/** The token of the server the CLI talks to; the planted files hold it too. */
const TOKEN = 'token-file-test-0123456789abcdef';
/** Not this user: the traditional "nobody". */
const OTHER_UID = 65534;
const SERVE = ['serve', '--listen', '127.0.0.1:0', '--upstream', '127.0.0.1:9', '--workers', '1'];

const esc = (text: string) => text.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
const tmp = () => mkdtempSync(join(tmpdir(), 'divert-token-'));

interface Planted {
  /** XDG_CONFIG_HOME: the file is in its default place there, divert/admin-token. */
  home: string;
  folder: string;
  file: string;
}

/** A fresh home with divert/admin-token as an operator (or someone else) left it. */
function plant(content: string, fileMode = 0o600, folderMode = 0o700): Planted {
  const home = tmp();
  const folder = join(home, 'divert');
  const file = join(folder, 'admin-token');
  mkdirSync(folder);
  writeFileSync(file, content);
  chmodSync(file, fileMode);
  chmodSync(folder, folderMode);
  return { home, folder, file };
}

/** What `divert serve`, the CLI and healthcheck must each refuse, and what the one line must say. */
const REFUSED: { what: string; plant(): Planted; message(p: Planted): RegExp }[] = [
  {
    what: 'a planted 0644 file',
    plant: () => plant(TOKEN + '\n', 0o644),
    message: (p) =>
      new RegExp(`^divert: admin token file "${esc(p.file)}" has mode 0644: group or others have access to it; chmod 600 ${esc(p.file)}$`),
  },
  {
    what: 'a symlink to a good file',
    plant: () => {
      const good = plant(TOKEN + '\n');
      const p = plant('');
      unlinkSync(p.file);
      symlinkSync(good.file, p.file);
      return p;
    },
    message: (p) =>
      new RegExp(
        `^divert: admin token file "${esc(p.file)}" is a symbolic link, which could point anywhere; replace the link with the file itself$`,
      ),
  },
  {
    what: 'a 0777 parent folder',
    plant: () => plant(TOKEN + '\n', 0o600, 0o777),
    message: (p) =>
      new RegExp(
        `^divert: admin token file "${esc(p.file)}" is in the folder "${esc(p.folder)}" of mode 0777, which group or others may write; chmod go-w ${esc(p.folder)}$`,
      ),
  },
  {
    what: 'a 1-character token',
    plant: () => plant('x\n'),
    message: (p) =>
      new RegExp(
        `^divert: admin token file "${esc(p.file)}" holds a token of 1 character: expected at least 16 characters; write a token of 16 or more printable characters there`,
      ),
  },
  {
    what: 'a file owned by another user',
    plant: () => {
      const p = plant(TOKEN + '\n');
      chownSync(p.file, OTHER_UID, OTHER_UID);
      return p;
    },
    message: (p) =>
      new RegExp(
        `^divert: admin token file "${esc(p.file)}" is owned by uid ${OTHER_UID}, not by this user \\(uid ${process.getuid!()}\\); chown ${process.getuid!()} ${esc(p.file)}`,
      ),
  },
];

/** Runs `divert ARGS` to its end: the exit status and stderr. */
async function finished(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; stderr: string }> {
  const run = runDivert(args, { env });
  try {
    return { code: await run.exited(30_000), stderr: run.stderr().trim() };
  } finally {
    await run.stop();
  }
}

/** Exit 2 and one line on stderr, as every bad configuration. */
async function refusedWith(args: string[], env: NodeJS.ProcessEnv, message: RegExp): Promise<void> {
  const { code, stderr } = await finished(args, env);
  assert.equal(code, 2, `divert ${args.join(' ')}: exit status; stderr: ${stderr}`);
  assert.equal(stderr.split('\n').length, 1, `one line: ${stderr}`);
  assert.match(stderr, message);
}

const asRoot = process.getuid?.() === 0;

describe('divert serve and its token file', () => {
  for (const c of REFUSED) {
    test(`refuses to start with ${c.what}`, async (t) => {
      if (c.what.includes('another user') && !asRoot) return t.skip('chown to another user needs root');
      const p = c.plant();
      await refusedWith(SERVE, { XDG_CONFIG_HOME: p.home }, c.message(p));
    });
  }

  test('--admin-token-file is checked as the default place is', async () => {
    const p = plant(TOKEN + '\n', 0o640);
    await refusedWith([...SERVE, '--admin-token-file', p.file], { XDG_CONFIG_HOME: tmp() }, /has mode 0640: .*chmod 600 /);
  });

  test('a 0600 file in a 0700 folder: its token is the one the admin API demands', async () => {
    const p = plant(`  ${TOKEN}\n`);
    const serve = runDivert(SERVE, { env: { XDG_CONFIG_HOME: p.home } });
    try {
      const { admin } = await serve.listeningLine();
      const asked = (token: string) => fetch(`http://${admin}/v1/names`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal((await asked(TOKEN)).status, 200, 'the token of the file, trimmed');
      assert.equal((await asked('another-token-0123456789abcdef')).status, 401);
      assert.equal(readFileSync(p.file, 'utf8'), `  ${TOKEN}\n`, 'the file is left as it was');
    } finally {
      await serve.stop();
    }
  });

  test('first start: generates the token into a new 0700 folder, as a 0600 file', async () => {
    const home = join(tmp(), 'not-yet');
    const serve = runDivert(SERVE, { env: { XDG_CONFIG_HOME: home } });
    let admin: string;
    try {
      admin = (await serve.listeningLine()).admin;
      const token = readFileSync(join(home, 'divert', 'admin-token'), 'utf8').trim();
      assert.match(token, /^[\x21-\x7e]{32,}$/);
      const reply = await fetch(`http://${admin}/v1/names`, { headers: { authorization: `Bearer ${token}` } });
      assert.equal(reply.status, 200);
    } finally {
      await serve.stop();
    }
    assert.equal(statSync(join(home, 'divert')).mode & 0o7777, 0o700, 'the folder');
    assert.equal(statSync(join(home, 'divert', 'admin-token')).mode & 0o7777, 0o600, 'the file');
  });

  test('will not generate a token into a folder others may write', async () => {
    const home = tmp();
    const folder = join(home, 'divert');
    mkdirSync(folder);
    chmodSync(folder, 0o777);
    await refusedWith(
      SERVE,
      { XDG_CONFIG_HOME: home },
      new RegExp(
        `^divert: admin token file "${esc(join(folder, 'admin-token'))}" is in the folder .* of mode 0777, which group or others may write; chmod go-w ${esc(folder)}$`,
      ),
    );
    assert.throws(() => statSync(join(folder, 'admin-token')), /ENOENT/, 'no file written there');
  });
});

describe('the CLI and its token file', () => {
  let serve: DivertProcess;
  let adminUrl: string;

  before(async () => {
    serve = runDivert([...SERVE, '--admin-token', TOKEN]);
    adminUrl = `http://${(await serve.listeningLine()).admin}`;
  });
  after(() => serve.stop());

  for (const c of REFUSED) {
    test(`divert names and healthcheck refuse ${c.what}`, async (t) => {
      if (c.what.includes('another user') && !asRoot) return t.skip('chown to another user needs root');
      const p = c.plant();
      await refusedWith(['names', 'list'], { XDG_CONFIG_HOME: p.home, DIVERT_ADMIN_URL: adminUrl }, c.message(p));
      await refusedWith(['healthcheck', '--admin-token-file', p.file], {}, c.message(p));
    });
  }

  test('--token-file and DIVERT_ADMIN_TOKEN_FILE are checked as the default place is', async () => {
    const p = plant(TOKEN + '\n', 0o604);
    await refusedWith(['names', 'list', '--token-file', p.file], { DIVERT_ADMIN_URL: adminUrl }, /has mode 0604: .*chmod 600 /);
    await refusedWith(
      ['divert', '192.0.2.1', '192.0.2.2'],
      { DIVERT_ADMIN_URL: adminUrl, DIVERT_ADMIN_TOKEN_FILE: p.file },
      /has mode 0604: .*chmod 600 /,
    );
  });

  test('a 0600 file in a 0700 folder is read', async () => {
    const p = plant(TOKEN + '\n');
    const { code, stderr } = await finished(['names', 'list'], { XDG_CONFIG_HOME: p.home, DIVERT_ADMIN_URL: adminUrl });
    assert.equal(code, 0, stderr);
    const other = await finished(['names', 'list', '--token-file', p.file], { DIVERT_ADMIN_URL: adminUrl });
    assert.equal(other.code, 0, other.stderr);
  });

  test('a token given explicitly is not a file, and is not checked as one', async () => {
    const { code, stderr } = await finished(['names', 'list', '--token', TOKEN], {
      XDG_CONFIG_HOME: plant('x\n', 0o666, 0o777).home,
      DIVERT_ADMIN_URL: adminUrl,
    });
    assert.equal(code, 0, stderr);
  });
});
