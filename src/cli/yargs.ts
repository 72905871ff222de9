// yargs and its helpers, for main.ts. yargs is some twenty modules (its parser, cliui,
// y18n, escalade, …) and reading them was most of what `divert names list` took beyond
// Node's own start; the build (npm run build) bundles this file, in place, into one
// module with everything it imports, so that the CLI loads one file instead.

export { default } from 'yargs';
export { hideBin } from 'yargs/helpers';
