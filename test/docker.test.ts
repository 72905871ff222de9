// The deployment files: docker/Dockerfile passes a Dockerfile linter and builds what the
// image runs, .dockerignore keeps what it copies, docker/compose.yaml holds the services
// with their healthchecks, volumes and start order, every file either of them names
// exists, their configuration loads with divert's own loaders, and the systemd unit is
// accepted by systemd-analyze.

import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { copyFileSync, cpSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, posix, relative, resolve } from 'node:path';
import { Copy, DockerfileParser, Healthcheck, type Instruction } from 'dockerfile-ast';
import { validate as lintDockerfile } from 'dockerfile-utils';
import ipaddr from 'ipaddr.js';
import { parse as parseYaml } from 'yaml';
import { planHealthcheck } from '../src/cli/healthcheck-command.js';
import { DEFAULT_HEALTHCHECK_TIMEOUT_MS } from '../src/cli/healthcheck-options.js';
import { loadServeConfig } from '../src/config/load.js';
import { envName, SERVE_OPTIONS, type OptionSpec } from '../src/config/options.js';
import { loadMonitorConfig, parseDuration } from '../src/monitor/config.js';
import { readZones } from '../src/table/zone/read.js';
import { ROOT } from './helpers/process.js';
import { execChild as run } from './helpers/children.js';

const DOCKER = join(ROOT, 'docker');
const DOCKERFILE = join(DOCKER, 'Dockerfile');
const COMPOSE = join(DOCKER, 'compose.yaml');
const UNIT = join(DOCKER, 'systemd', 'divert.service');
const read = (path: string) => readFileSync(path, 'utf8');
const packageJson = JSON.parse(read(join(ROOT, 'package.json'))) as { bin: Record<string, string>; engines: { node: string } };
/** dist/src/main.js: what `divert` runs, in every deployment. */
const BIN = packageJson.bin.divert;

/** The variables divert serve reads. */
const SERVE_VARIABLES = new Set(
  Object.values(SERVE_OPTIONS as Record<string, OptionSpec>)
    .map((s) => envName(s.flag))
    .concat('DIVERT_CONFIG'),
);

/** KEY=value lines of an env file (comments and blank lines skipped). */
function envFile(path: string): Record<string, string> {
  const out: Record<string, string> = {};
  for (const line of read(path).split('\n')) {
    const text = line.trim();
    if (text === '' || text.startsWith('#')) continue;
    const match = /^([A-Z_][A-Z0-9_]*)=(.*)$/.exec(text);
    assert.ok(match, `${path}: "${line}" is not KEY=value`);
    out[match[1]] = match[2];
  }
  return out;
}

// ---- .dockerignore -------------------------------------------------------------------

/** The patterns of .dockerignore (Docker's matching: globs over paths from the context's top; no "!" used here). */
function dockerignore(): RegExp[] {
  return read(join(ROOT, '.dockerignore'))
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && !l.startsWith('#'))
    .map((pattern) => {
      assert.ok(!pattern.startsWith('!'), 'exceptions ("!") are not used, so this simple matcher is enough');
      const glob = posix.normalize(pattern.replace(/^\/+/, '')).replace(/\/$/, '');
      const source = glob
        .split(/(\*\*|\*|\?)/)
        .map((part) => (part === '**' ? '.*' : part === '*' ? '[^/]*' : part === '?' ? '[^/]' : part.replace(/[.+^${}()|[\]\\]/g, '\\$&')))
        .join('');
      return new RegExp(`^${source}$`);
    });
}

/** Whether a path of the build context (relative, "/"-separated) is left out of it: itself or a folder above it. */
function isIgnored(path: string, patterns: RegExp[]): boolean {
  const parts = path.split('/');
  return parts.some((_, i) => patterns.some((p) => p.test(parts.slice(0, i + 1).join('/'))));
}

// ---- Dockerfile ----------------------------------------------------------------------

const dockerfileText = read(DOCKERFILE);
const dockerfile = DockerfileParser.parse(dockerfileText);

/** The instructions of each stage, the stage named by its AS (the last: "runtime" when unnamed). */
function stages(): { name: string; base: string; instructions: Instruction[] }[] {
  const args = new Map(
    dockerfile.getInitialARGs().flatMap((arg) => {
      const property = arg.getProperty();
      return property ? [[property.getName(), property.getValue() ?? ''] as [string, string]] : [];
    }),
  );
  const out: { name: string; base: string; instructions: Instruction[] }[] = [];
  for (const instruction of dockerfile.getInstructions()) {
    if (instruction.getKeyword() === 'FROM') {
      const words = instruction.getArguments().map((a) => a.getValue());
      const base = words[0].replace(/\$\{(\w+)\}|\$(\w+)/g, (_, a: string, b: string) => args.get(a ?? b) ?? '');
      out.push({ name: words[2] ?? 'runtime', base, instructions: [] });
    } else if (out.length > 0) {
      out[out.length - 1].instructions.push(instruction);
    }
  }
  return out;
}

/** The JSON (exec) form of an instruction's arguments, after its flags. */
function execForm(instruction: Instruction): string[] {
  const content = instruction.getArgumentsContent() ?? '';
  const json = content.slice(content.indexOf('['));
  return JSON.parse(json) as string[];
}

describe('docker/Dockerfile', () => {
  test("passes dockerfile-utils (the linter of VS Code's Docker extension) without an error or warning", () => {
    const problems = lintDockerfile(dockerfileText);
    assert.deepEqual(
      problems.map((p) => `line ${p.range.start.line + 1}: ${p.message}`),
      [],
    );
    // and the linter does catch mistakes of the kind this test guards against
    const broken = lintDockerfile('FROM node:20-bookworm-slim\nEXPOSE 53/xyz\nHEALTHCHECK --interval=5 CMD\nUSER\n');
    assert.equal(broken.length, 4, JSON.stringify(broken.map((p) => p.message)));
  });

  test('multi-stage: compiled with the dev dependencies, run on node:24-slim with the production ones only, without the Node of the npm registry (the image has its own)', () => {
    const all = stages();
    assert.deepEqual(
      all.map((s) => s.name),
      ['build', 'deps', 'runtime'],
    );
    for (const stage of all) assert.match(stage.base, /^node:24-[a-z]+-slim$/, `${stage.name} stage base`);
    const runs = (name: string) =>
      all
        .find((s) => s.name === name)!
        .instructions.filter((i) => i.getKeyword() === 'RUN')
        .map((i) => i.getArgumentsContent() ?? '');
    assert.ok(
      runs('build').some((r) => /npm ci\b/.test(r) && !/--omit=dev/.test(r)),
      'build: npm ci with the dev dependencies (typescript)',
    );
    assert.ok(
      runs('build').some((r) => /npm run build\b/.test(r)),
      'build: npm run build (tsc, then esbuild bundles yargs for the CLI)',
    );
    assert.ok(
      runs('build').some((r) => /npm ci\b/.test(r) && !/--omit=optional/.test(r)),
      'build: npm ci with the optional dependencies (the native binary of esbuild is one)',
    );
    assert.ok(
      runs('deps').some((r) => /npm ci --omit=dev/.test(r)),
      'deps: npm ci --omit=dev',
    );
    assert.ok(
      runs('deps').some((r) => /npm ci\b.*--omit=optional/.test(r)),
      'deps: npm ci --omit=optional (node-linux-*: the image runs its own Node 24)',
    );
    const runtime = all[2].instructions;
    const fromStage = runtime
      .filter((i): i is Copy => i instanceof Copy)
      .map((i) => [i.getFromFlag()?.getValue() ?? undefined, i.getArguments().map((a) => a.getValue())] as const);
    assert.deepEqual(
      fromStage.filter(([from]) => from !== undefined),
      [
        ['deps', ['/app/node_modules', './node_modules']],
        ['build', ['/app/dist/src', './dist/src']],
        ['build', ['/app/dist/native', './dist/native']],
        ['build', ['/app/dist/dashboard', './dist/dashboard']],
      ],
      'the runtime gets node_modules from deps (production only) and the compiled code, addons and dashboard from build',
    );
    assert.ok(
      runs('build').some((r) => /apt-get install\b.*\bgcc\b/.test(r)),
      'build: cc for the addons of --udp-batch (npm run build compiles them only where cc is)',
    );
    assert.ok(
      !runtime.some((i) => i.getKeyword() === 'RUN' && /npm (ci|install)/.test(i.getArgumentsContent() ?? '')),
      'no npm install in the runtime stage',
    );
  });

  test('the runtime stage runs divert as a non-root user, with its ports, HEALTHCHECK and ENTRYPOINT', () => {
    const runtime = stages()[2].instructions;
    const one = (keyword: string) => {
      const found = runtime.filter((i) => i.getKeyword() === keyword);
      assert.equal(found.length, 1, `one ${keyword}`);
      return found[0];
    };
    const user = one('USER').getArgumentsContent()!;
    assert.doesNotMatch(user, /^(root|0)(:|$)/, 'not root');
    assert.equal(user, '1000:1000', 'the image\'s "node" user, by number (Kubernetes runAsNonRoot checks numbers)');
    assert.deepEqual(
      one('EXPOSE')
        .getArguments()
        .map((a) => a.getValue())
        .sort(),
      ['53/tcp', '53/udp', '5380/tcp'],
    );
    assert.deepEqual(execForm(one('ENTRYPOINT')), ['divert']);
    const healthcheck = one('HEALTHCHECK') as Healthcheck;
    const flags = Object.fromEntries(healthcheck.getFlags().map((f) => [f.getName(), f.getValue()]));
    // divert healthcheck's own deadline ends within Docker's, so a failure says what failed
    assert.ok(parseDuration(flags.timeout)! > DEFAULT_HEALTHCHECK_TIMEOUT_MS, `--timeout=${flags.timeout}`);
    assert.deepEqual(execForm(healthcheck), ['divert', 'healthcheck']);
    // `divert` on the PATH is package.json's bin, the file the build stage compiled
    assert.ok(
      runtime.some((i) => i.getKeyword() === 'RUN' && (i.getArgumentsContent() ?? '').includes(`ln -s /app/${BIN} /usr/local/bin/divert`)),
      `divert -> /app/${BIN}`,
    );
    assert.ok(
      stages()[0].instructions.some((i) => (i.getArgumentsContent() ?? '').includes(`chmod 0755 ${BIN}`)),
      `${BIN} is executable`,
    );
    assert.ok(existsSync(join(ROOT, 'src', 'main.ts')) && BIN === 'dist/src/main.js', 'tsc compiles src/main.ts to dist/src/main.js');
    assert.match(read(join(ROOT, 'src', 'main.ts')), /^#!\/usr\/bin\/env node\n/, 'main.js runs through its #! line');
  });

  test('every COPY source exists and is in the build context (.dockerignore leaves it in)', () => {
    const patterns = dockerignore();
    const stageNames = new Set(stages().map((s) => s.name));
    let sources = 0;
    for (const copy of dockerfile.getCOPYs()) {
      const from = copy.getFromFlag()?.getValue();
      const words = copy.getArguments().map((a) => a.getValue());
      if (from !== undefined && from !== null) {
        assert.ok(stageNames.has(from), `COPY --from=${from}: a stage of this file`);
        continue;
      }
      for (const source of words.slice(0, -1)) {
        sources++;
        assert.ok(existsSync(join(ROOT, source)), `COPY ${source}: exists in the repository`);
        assert.ok(!isIgnored(source, patterns), `COPY ${source}: not excluded by .dockerignore`);
      }
    }
    assert.ok(sources >= 5, 'package.json, package-lock.json, tsconfig.json, src, zones');
  });
});

describe('.dockerignore', () => {
  test('keeps local builds, dependencies, VCS data and secrets out of the build context', () => {
    const patterns = dockerignore();
    for (const path of [
      'node_modules',
      'node_modules/yaml/package.json',
      'dist/src/main.js',
      '.build-docker/src/main.js',
      '.git/HEAD',
      'docker/divert.env',
      'test/cli.test.ts',
    ]) {
      assert.ok(isIgnored(path, patterns), `${path} is left out`);
    }
    for (const path of [
      'src/main.ts',
      'zones/example.zone',
      'package.json',
      'package-lock.json',
      'tsconfig.json',
      'docker/divert.env.example',
    ]) {
      assert.ok(!isIgnored(path, patterns), `${path} is sent`);
    }
  });
});

// ---- compose.yaml --------------------------------------------------------------------

interface Service {
  build?: { context: string; dockerfile: string };
  image?: string;
  command?: string[];
  env_file?: (string | { path: string })[];
  environment?: Record<string, string | number>;
  volumes?: string[];
  ports?: string[];
  depends_on?: Record<string, { condition: string }>;
  healthcheck?: { test: string[]; interval?: string; timeout?: string; retries?: number };
  networks?: string[] | Record<string, { ipv4_address?: string } | null>;
  sysctls?: Record<string, string | number>;
  cap_drop?: string[];
  cap_add?: string[];
  read_only?: boolean;
}
interface Compose {
  services: Record<string, Service>;
  volumes?: Record<string, unknown>;
  networks?: Record<string, { ipam?: { config?: { subnet: string }[] } }>;
}

const compose = parseYaml(read(COMPOSE)) as Compose;

/** ${VAR:-default} and ${VAR} as compose fills them in with no variable set. */
const interpolate = (value: string | number) =>
  String(value).replace(/\$\{(\w+)(?::?-([^}]*))?\}/g, (_, _name: string, fallback?: string) => fallback ?? '');

/** A compose-relative path (relative to docker/). */
const fromCompose = (path: string) => resolve(DOCKER, path);

/** "SRC:DST[:MODE]" of a service's volumes. */
function mounts(service: Service): { source: string; target: string; mode?: string }[] {
  return (service.volumes ?? []).map((spec) => {
    const [source, target, mode] = spec.split(':');
    return { source, target, mode };
  });
}

function environment(service: Service): Record<string, string> {
  return Object.fromEntries(Object.entries(service.environment ?? {}).map(([k, v]) => [k, interpolate(v)]));
}

describe('docker/compose.yaml', () => {
  test('the services, each with a healthcheck, started in order of health', () => {
    assert.deepEqual(Object.keys(compose.services).sort(), ['divert', 'mirror-a', 'mirror-b', 'monitor', 'redis']);
    for (const [name, service] of Object.entries(compose.services)) {
      const check = service.healthcheck;
      assert.ok(check, `${name} has a healthcheck`);
      assert.ok(
        ['CMD', 'CMD-SHELL'].includes(check.test[0]) && check.test.length >= 2,
        `${name}: healthcheck test ${JSON.stringify(check.test)}`,
      );
    }
    const { divert, redis, monitor } = compose.services;
    assert.deepEqual(divert.healthcheck!.test, ['CMD', 'divert', 'healthcheck']);
    assert.ok(
      parseDuration(divert.healthcheck!.timeout)! > DEFAULT_HEALTHCHECK_TIMEOUT_MS,
      'Docker waits longer than divert healthcheck does',
    );
    assert.deepEqual(
      monitor.healthcheck!.test.slice(0, 4),
      ['CMD', 'divert', 'monitor', 'status'],
      "the monitor overrides the image's check of divert serve",
    );
    assert.match(redis.healthcheck!.test.join(' '), /redis-cli ping/);
    assert.deepEqual(divert.depends_on, { redis: { condition: 'service_healthy' } });
    assert.equal(monitor.depends_on?.divert?.condition, 'service_healthy');
    assert.ok(monitor.depends_on?.['mirror-a'] && monitor.depends_on?.['mirror-b'], 'the monitor starts after the mirrors');
  });

  test('divert serves from Redis, with DNS published on 53/udp and 53/tcp and the admin API on loopback', () => {
    const { divert } = compose.services;
    assert.deepEqual(divert.command, ['serve']);
    const env = environment(divert);
    assert.match(env.DIVERT_REDIS, /^redis:\/\/redis:6379$/, 'the redis service');
    const ports = (divert.ports ?? []).map(interpolate);
    assert.ok(ports.includes('53:53/udp') && ports.includes('53:53/tcp'), ports.join(' '));
    assert.ok(ports.includes('127.0.0.1:5380:5380'), "admin published on the host's loopback only");
    // port 53 without any capability
    assert.equal(String(divert.sysctls?.['net.ipv4.ip_unprivileged_port_start']), '0');
    assert.deepEqual(divert.cap_drop, ['ALL']);
    assert.equal(divert.read_only, true);
  });

  test('redis persists: appendonly, on a named volume', () => {
    const { redis } = compose.services;
    const command = (redis.command ?? []).join(' ');
    assert.match(command, /--appendonly yes/);
    const data = mounts(redis).find((m) => m.target === '/data');
    assert.ok(data, 'a volume on /data');
    assert.ok(compose.volumes && data.source in compose.volumes, `the named volume "${data.source}" is declared`);
  });

  test('every file it names exists: build context, Dockerfile, mounted folders and files, env files', () => {
    let named = 0;
    for (const [name, service] of Object.entries(compose.services)) {
      if (service.build) {
        const context = fromCompose(service.build.context);
        assert.equal(context, ROOT, `${name}: the build context is the repository's top`);
        assert.equal(resolve(context, service.build.dockerfile), DOCKERFILE, `${name}: the Dockerfile linted above`);
        named++;
      }
      for (const mount of mounts(service)) {
        if (!/^[./]/.test(mount.source)) continue; // a named volume
        assert.ok(existsSync(fromCompose(mount.source)), `${name}: ${mount.source} exists`);
        assert.equal(mount.mode, 'ro', `${name}: ${mount.source} is mounted read-only`);
        named++;
      }
      for (const entry of service.env_file ?? []) {
        const path = fromCompose(typeof entry === 'string' ? entry : entry.path);
        // the real one holds the token: an example is committed, the file itself never is
        assert.ok(existsSync(`${path}.example`), `${name}: ${path}.example exists`);
        const rel = relative(ROOT, path);
        assert.ok(read(join(ROOT, '.gitignore')).split('\n').includes(rel), `${rel} is in .gitignore`);
        assert.ok(isIgnored(rel, dockerignore()), `${rel} is in .dockerignore`);
        assert.ok('DIVERT_ADMIN_TOKEN' in envFile(`${path}.example`), 'the example names DIVERT_ADMIN_TOKEN');
      }
    }
    assert.ok(named >= 6, `${named} paths checked`);
    const zones = mounts(compose.services.divert).find((m) => m.source === '../zones');
    assert.ok(zones && statSync(fromCompose(zones.source)).isDirectory(), "the repository's zones/ is mounted");
  });

  test("divert's environment is a valid configuration of divert serve, and its HEALTHCHECK finds the ports and token from it", async () => {
    const { divert } = compose.services;
    const env = environment(divert);
    for (const key of Object.keys(env)) assert.ok(SERVE_VARIABLES.has(key), `${key} is an option of divert serve`);
    const example = envFile(fromCompose('divert.env.example'));
    for (const key of Object.keys(example)) assert.ok(SERVE_VARIABLES.has(key), `divert.env.example: ${key} is an option of divert serve`);
    const withToken = { ...env, DIVERT_ADMIN_TOKEN: 'compose-test-token-0123456789' };
    const config = loadServeConfig({}, withToken);
    assert.equal(config.admin.host, '0.0.0.0', 'the monitor reaches the admin port from its own container');
    const zonesMount = mounts(divert).find((m) => m.target === env.DIVERT_ZONES);
    assert.ok(zonesMount, `DIVERT_ZONES ${env.DIVERT_ZONES} is a mounted folder`);
    assert.ok((await readZones([fromCompose(zonesMount.source)])).size > 0, 'the mounted zone files read');
    const plan = planHealthcheck({}, withToken);
    assert.deepEqual(
      [plan.server, plan.admin, plan.token],
      [{ host: '127.0.0.1', port: 53 }, { host: '127.0.0.1', port: 5380 }, withToken.DIVERT_ADMIN_TOKEN],
    );
  });

  test("the monitor's config loads with the monitor's loader, reaches divert and watches the two mirrors", () => {
    const { monitor } = compose.services;
    assert.deepEqual(monitor.build, compose.services.divert.build, 'the same image');
    const env = environment(monitor);
    const mount = mounts(monitor).find((m) => m.target === env.DIVERT_MONITOR_CONFIG);
    assert.ok(mount, `DIVERT_MONITOR_CONFIG ${env.DIVERT_MONITOR_CONFIG} is a mounted file`);
    const config = loadMonitorConfig(fromCompose(mount.source));
    const admin = new URL(config.admin!);
    assert.ok(admin.hostname in compose.services, `admin ${config.admin}: a service of this file`);
    assert.equal(
      Number(admin.port),
      loadServeConfig({}, { ...environment(compose.services.divert), DIVERT_ADMIN_TOKEN: 'x'.repeat(16) }).admin.port,
    );
    const subnet = ipaddr.parseCIDR(compose.networks!.divert.ipam!.config![0].subnet);
    const mirrorAddresses = ['mirror-a', 'mirror-b'].map((name) => {
      const networks = compose.services[name].networks as Record<string, { ipv4_address: string }>;
      const address = networks.divert.ipv4_address;
      assert.ok(ipaddr.parse(address).match(subnet), `${name} ${address} is in the network's subnet`);
      return address;
    });
    const watched = config.services.flatMap((s) => s.mirrors.map((m) => m.address));
    assert.deepEqual(watched.sort(), mirrorAddresses.sort(), 'the monitor checks exactly the two mirrors');
    for (const name of ['mirror-a', 'mirror-b']) {
      const html = mounts(compose.services[name]).find((m) => m.target === '/usr/share/nginx/html')!;
      assert.ok(existsSync(join(fromCompose(html.source), 'healthz')), `${name} serves /healthz`);
      const path = config.services[0].check.path;
      assert.equal(path, '/healthz');
      assert.match(compose.services[name].healthcheck!.test.join(' '), /\/healthz/);
    }
  });
});

// ---- systemd -------------------------------------------------------------------------

/** Sections of a unit file, each key with all its values (keys may repeat). */
function parseUnit(text: string): Map<string, Map<string, string[]>> {
  const sections = new Map<string, Map<string, string[]>>();
  let current: Map<string, string[]> | undefined;
  text.split('\n').forEach((line, i) => {
    const trimmed = line.trim();
    if (trimmed === '' || trimmed.startsWith('#') || trimmed.startsWith(';')) return;
    const header = /^\[([A-Za-z]+)\]$/.exec(trimmed);
    if (header) {
      assert.ok(!sections.has(header[1]), `line ${i + 1}: [${header[1]}] twice`);
      sections.set(header[1], (current = new Map()));
      return;
    }
    const pair = /^([A-Za-z]+)=(.*)$/.exec(trimmed);
    assert.ok(pair && current, `line ${i + 1}: "${line}" is neither a section nor Key=value in one`);
    current.set(pair[1], [...(current.get(pair[1]) ?? []), pair[2]]);
  });
  return sections;
}

/** Where this machine's systemd keeps its own units (sysinit.target and the rest), if it has any. */
function systemUnitDir(): string | undefined {
  return ['/usr/lib/systemd/system', '/lib/systemd/system'].find((dir) => existsSync(join(dir, 'sysinit.target')));
}

async function hasSystemdAnalyze(): Promise<boolean> {
  try {
    await run('systemd-analyze', ['--version']);
    return true;
  } catch {
    return false;
  }
}

describe('docker/systemd/divert.service', () => {
  const unit = parseUnit(read(UNIT));
  const service = unit.get('Service')!;
  const one = (key: string) => {
    const values = service.get(key);
    assert.equal(values?.length, 1, `Service: one ${key}`);
    return values[0];
  };

  test('runs divert serve as a dedicated user, with one capability, reloads with SIGHUP, restarts on failure', () => {
    assert.deepEqual([...unit.keys()], ['Unit', 'Service', 'Install']);
    assert.deepEqual(unit.get('Install')!.get('WantedBy'), ['multi-user.target']);
    assert.equal(one('User'), 'divert');
    assert.equal(one('Group'), 'divert');
    const [command, ...args] = one('ExecStart').split(/\s+/);
    assert.ok(command.startsWith('/') && existsSync(command), `${command} exists`);
    assert.ok(
      args.some((a) => a.endsWith(`/${BIN}`)),
      `runs ${BIN}`,
    );
    assert.equal(args[args.length - 1], 'serve');
    assert.equal(one('ExecReload'), '/bin/kill -HUP $MAINPID');
    assert.ok(existsSync('/bin/kill'), '/bin/kill exists');
    assert.equal(one('Restart'), 'on-failure');
    assert.equal(one('KillMode'), 'mixed', 'SIGTERM to the primary, which drains its workers');
    assert.equal(one('AmbientCapabilities'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('CapabilityBoundingSet'), 'CAP_NET_BIND_SERVICE');
    assert.equal(one('NoNewPrivileges'), 'yes');
    assert.equal(one('ProtectSystem'), 'strict');
    assert.equal(one('ProtectHome'), 'yes');
  });

  test("the token file's folder is writable under ProtectSystem=strict; every variable is an option of serve", () => {
    const variables = Object.fromEntries((service.get('Environment') ?? []).map((v) => v.split('=', 2) as [string, string]));
    for (const key of Object.keys(variables)) assert.ok(SERVE_VARIABLES.has(key), `${key} is an option of divert serve`);
    const tokenDir = dirname(variables.DIVERT_ADMIN_TOKEN_FILE);
    assert.ok((service.get('ReadWritePaths') ?? []).includes(tokenDir), `ReadWritePaths holds ${tokenDir}`);
    assert.equal(`/var/lib/${one('StateDirectory')}`, tokenDir, 'StateDirectory creates it, owned by the user');
    const envPath = one('EnvironmentFile');
    assert.ok(envPath.startsWith('/etc/'), envPath);
    const example = envFile(join(dirname(UNIT), 'divert.env.example'));
    for (const key of Object.keys(example)) assert.ok(SERVE_VARIABLES.has(key), `divert.env.example: ${key} is an option of divert serve`);
    const config = loadServeConfig({}, { ...example, ...variables });
    assert.equal(config.adminTokenFile, variables.DIVERT_ADMIN_TOKEN_FILE);
  });

  test('systemd-analyze verify accepts it, and rates its exposure OK (2.0 or less)', async (t) => {
    if (!(await hasSystemdAnalyze())) {
      // reported as skipped, not passed: the checks above hold, but systemd was not asked (CI installs it)
      t.skip('systemd-analyze is not installed: the unit was checked as an INI file only');
      return;
    }
    const units = systemUnitDir();
    assert.ok(units, "systemd's own units are installed with systemd-analyze");
    // an image of the target machine: the unit, systemd's units, and the commands it runs
    const root = mkdtempSync(join(tmpdir(), 'divert-systemd-'));
    t.after(() => rmSync(root, { recursive: true, force: true }));
    mkdirSync(join(root, 'etc/systemd/system'), { recursive: true });
    copyFileSync(UNIT, join(root, 'etc/systemd/system/divert.service'));
    cpSync(units, join(root, 'usr/lib/systemd/system'), { recursive: true, verbatimSymlinks: true });
    for (const key of ['ExecStart', 'ExecReload']) {
      const command = one(key).split(/\s+/)[0];
      mkdirSync(join(root, dirname(command)), { recursive: true });
      copyFileSync(command, join(root, command));
    }
    const verify = await run('systemd-analyze', ['verify', `--root=${root}`, '--man=no', 'divert.service']).catch(
      (err: { stderr: string; code: number }) => err,
    );
    assert.equal(verify.stderr.trim(), '', 'no warning (an unknown key, a bad value, a missing command)');
    const security = await run('systemd-analyze', [
      'security',
      '--offline=yes',
      `--root=${root}`,
      '--threshold=20',
      'divert.service',
    ]).catch((err: { stdout: string; code: number }) => err);
    assert.ok(!('code' in security) || security.code === 0, `exposure above 2.0:\n${security.stdout.split('\n').slice(-3).join('\n')}`);
    assert.match(security.stdout, /Overall exposure level for divert\.service: (1\.\d|2\.0) OK/);
    writeFileSync(join(root, 'etc/systemd/system/divert.service'), read(UNIT).replace('ProtectSystem=strict', 'ProtectSystem=stricter'));
    const bad = await run('systemd-analyze', ['verify', `--root=${root}`, '--man=no', 'divert.service']).catch(
      (err: { stderr: string }) => err,
    );
    assert.match(bad.stderr, /protect system value, ignoring: stricter/, 'and it does report a bad value');
  });
});
