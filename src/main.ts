#!/usr/bin/env node
// The `divert` command line: parses the words, runs the command, and turns any start-up
// error into one line on stderr with a non-zero exit status (2: bad usage or config).

import './runtime-check.js';
import { useCompileCache } from './compile-cache.js';
import { isDivertError } from './errors.js';

// before anything else is imported, so that yargs and every command's modules come from the cache
useCompileCache();

function failure(err: unknown): never {
  const usage = isDivertError(err, 'BAD_CONFIG') || isDivertError(err, 'BAD_ZONE');
  process.stderr.write(`divert: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(usage ? 2 : 1);
}

// Each command's modules are imported when that command is chosen (yargs calls only its
// builder, and awaits it), its runner's when it runs: `divert --help` loads none, and the
// client commands none of the server's (fastify, ioredis, pino, prom-client, zod).
async function main(): Promise<void> {
  const { default: yargs, hideBin } = await import('./cli/yargs.js');
  await yargs(hideBin(process.argv))
    .scriptName('divert')
    .usage('$0 <command> [options]')
    .epilogue(
      'divert is an enhanced naming server: it answers chosen names from an address table that a monitor rewrites at runtime,\nand forwards every other query unchanged. Each command has --help.',
    )
    .command(
      'serve',
      'run the naming server (DNS on UDP and TCP; DoT and DoH with a certificate)',
      async (y) => (await import('./cli/serve-options.js')).serveOptions(y),
      async (argv) => (await import('./cli/serve-command.js')).runServe(argv),
    )
    .command('names', 'list, show and change the names divert answers (through the admin API)', async (y) =>
      (await import('./cli/names-command.js')).namesCommand(y),
    )
    .command(
      'monitor',
      'health-check mirror servers and keep names pointing at the healthy ones (divert monitor status: its view)',
      async (y) => (await import('./cli/monitor-command.js')).monitorCommand(y),
    )
    .command(
      'proxy',
      'relay TCP connections and UDP flows to the address the table gives now, and move them when it changes (divert proxy status: its connections)',
      async (y) => (await import('./cli/proxy-command.js')).proxyCommand(y),
    )
    .command(
      'divert <from> <to>',
      'make every name that answers one address answer another (through the admin API)',
      async (y) => (await import('./cli/divert-command.js')).divertOptions(y),
      async (argv) => (await import('./cli/divert-command.js')).runDiversion(argv),
    )
    .command('diversions', 'list the diversions in force, or delete one (through the admin API)', async (y) =>
      (await import('./cli/diversions-command.js')).diversionsCommand(y),
    )
    .command(
      'validate',
      'check a configuration, its zone files and key file as divert serve would read them, without starting it',
      async (y) => (await import('./cli/serve-options.js')).validateOptions(y),
      async (argv) => {
        process.exitCode = await (await import('./cli/validate-command.js')).runValidate(argv);
      },
    )
    .command(
      'healthcheck',
      'check that the divert serve on this machine answers DNS and its admin /healthz (exit 0 or 1; for HEALTHCHECK)',
      async (y) => (await import('./cli/healthcheck-options.js')).healthcheckOptions(y),
      async (argv) => {
        process.exitCode = await (await import('./cli/healthcheck-command.js')).runHealthcheck(argv);
      },
    )
    .demandCommand(1, 'name a command (divert --help lists them)')
    .strict()
    .fail((message, err) => {
      if (err) failure(err);
      process.stderr.write(`divert: ${message} (see divert --help)\n`);
      process.exit(2);
    })
    .help()
    .version(false)
    .wrap(Math.max(140, process.stdout.columns ?? 0))
    .parseAsync();
}

main().catch(failure);
