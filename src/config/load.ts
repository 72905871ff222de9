// Builds the configuration from flags, DIVERT_* variables and a config file (JSON or
// YAML), in that order of precedence, then the defaults; every value is checked against
// its option's schema and a bad one stops start-up with one line naming it.

import { readFileSync } from 'node:fs';
import { parse as parseYaml } from 'yaml';
import { DivertError } from '../errors.js';
import { maskUrl } from '../redact.js';
import { envName, SERVE_OPTIONS, type OptionSpec, type ServeConfig } from './options.js';

type Source = { label: (flag: string) => string; get: (spec: OptionSpec) => unknown };

/** A --config file as data: YAML 1.2 is a superset of JSON, so one parser reads both. */
export function readYamlFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new DivertError('BAD_CONFIG', `--config "${path}": cannot read it (${(err as NodeJS.ErrnoException).code ?? String(err)})`);
  }
  try {
    return parseYaml(text);
  } catch (err) {
    throw new DivertError('BAD_CONFIG', `--config "${path}": not valid JSON or YAML: ${(err as Error).message.split('\n')[0]}`);
  }
}

function readConfigFile(path: string): Record<string, unknown> {
  const data = readYamlFile(path);
  if (data === null || data === undefined) return {};
  if (typeof data !== 'object' || Array.isArray(data)) {
    throw new DivertError('BAD_CONFIG', `--config "${path}": expected a map of option names to values`);
  }
  const known = new Set(Object.values(SERVE_OPTIONS).map((s) => s.flag));
  for (const key of Object.keys(data)) {
    if (!known.has(key)) {
      throw new DivertError('BAD_CONFIG', `--config "${path}": unknown option "${key}" (known: ${[...known].join(', ')})`);
    }
  }
  return data as Record<string, unknown>;
}

function splitList(value: unknown): unknown[] {
  if (Array.isArray(value)) return value;
  if (typeof value === 'string') return value.split(/[\s,]+/).filter((v) => v !== '');
  return [value];
}

function validate(spec: OptionSpec, raw: unknown, from: string): unknown {
  const values = spec.repeatable ? splitList(raw) : [raw];
  if (!spec.repeatable && Array.isArray(raw)) {
    throw new DivertError('BAD_CONFIG', `--${spec.flag}${from}: given more than once; it takes one value`);
  }
  const parsed = values.map((value) => {
    const result = spec.schema.safeParse(value);
    if (result.success) return result.data;
    const shown = spec.flag === 'redis' ? maskUrl(String(value)) : String(value);
    throw new DivertError('BAD_CONFIG', `--${spec.flag} "${shown}"${from}: ${result.error.issues[0].message}`);
  });
  return spec.repeatable ? parsed : parsed[0];
}

/**
 * `argv` holds the flags as parsed (keys are flag names), without defaults filled in.
 * Returns the frozen configuration.
 */
export function loadServeConfig(argv: Record<string, unknown>, env: NodeJS.ProcessEnv): ServeConfig {
  const configPath = (argv.config as string | undefined) ?? env.DIVERT_CONFIG;
  const file = configPath ? readConfigFile(configPath) : {};
  const sources: Source[] = [
    { label: () => '', get: (spec) => argv[spec.flag] },
    { label: (flag) => ` (from ${envName(flag)})`, get: (spec) => env[envName(spec.flag)] || undefined },
    { label: () => ` (from ${configPath})`, get: (spec) => file[spec.flag] },
  ];
  const config: Record<string, unknown> = {};
  for (const [key, spec] of Object.entries(SERVE_OPTIONS) as [string, OptionSpec][]) {
    const source = sources.find((s) => s.get(spec) !== undefined);
    const raw = source ? source.get(spec) : spec.default;
    config[key] = raw === undefined ? undefined : validate(spec, raw, source ? source.label(spec.flag) : ' (default)');
  }
  return Object.freeze(config) as unknown as ServeConfig;
}
