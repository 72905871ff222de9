#!/usr/bin/env node
// The `divert` command line: parses the words, runs the command, and turns any start-up
// error into one line on stderr with a non-zero exit status (2: bad usage or config).

import './runtime-check.js';
import yargs from 'yargs';
import { hideBin } from 'yargs/helpers';
import { isDivertError } from './errors.js';

// Each command's module is loaded only when that command runs (or shows its --help):
// `divert names list` need not load the server, Redis and HTTP libraries that
// `divert serve` does, which took it three times as long to start.
const serve = () => import('./cli/serve-command.js');
const names = () => import('./cli/names-command.js');
const diversion = () => import('./cli/divert-command.js');
const monitor = () => import('./cli/monitor-command.js');
const healthcheck = () => import('./cli/healthcheck-command.js');
const validate = () => import('./cli/validate-command.js');

function failure(err: unknown): never {
  const usage = isDivertError(err, 'BAD_CONFIG') || isDivertError(err, 'BAD_ZONE');
  process.stderr.write(`divert: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(usage ? 2 : 1);
}

async function main(): Promise<void> {
  await yargs(hideBin(process.argv))
    .scriptName('divert')
    .usage('$0 <command> [options]')
    .epilogue('divert is an enhanced naming server: it answers chosen names from an address table that a monitor rewrites at runtime,\nand forwards every other query unchanged. Each command has --help.')
    .command('serve', 'run the naming server (DNS on UDP and TCP)', async (y) => (await serve()).serveOptions(y), async (argv) => (await serve()).runServe(argv))
    .command('names', 'list, show and change the names divert answers (through the admin API)', async (y) => (await names()).namesCommand(y))
    .command('monitor', 'health-check mirror servers and keep names pointing at the healthy ones (divert monitor status: its view)', async (y) => (await monitor()).monitorCommand(y))
    .command('divert <from> <to>', 'make every name that answers one address answer another (through the admin API)', async (y) => (await diversion()).divertOptions(y), async (argv) => (await diversion()).runDiversion(argv))
    .command('validate', 'check a configuration, its zone files and key file as divert serve would read them, without starting it', async (y) => (await validate()).validateOptions(y), async (argv) => {
      process.exitCode = await (await validate()).runValidate(argv);
    })
    .command('healthcheck', 'check that the divert serve on this machine answers DNS and its admin /healthz (exit 0 or 1; for HEALTHCHECK)', async (y) => (await healthcheck()).healthcheckOptions(y), async (argv) => {
      process.exitCode = await (await healthcheck()).runHealthcheck(argv);
    })
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
