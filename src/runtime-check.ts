// Node.js 24 is the runtime divert is built, tested and shipped for. `npm ci` brings it
// (node_modules/.bin/node, which every npm script runs); started by another node, divert
// says so in one line instead of failing later on something that runtime lacks.

const REQUIRED_MAJOR = 24;

const major = Number(process.versions.node.split('.')[0]);
if (major < REQUIRED_MAJOR) {
  process.stderr.write(
    `divert: needs Node.js ${REQUIRED_MAJOR} or later, and this is ${process.version} (${process.execPath}); ` +
      'run it with the node that npm ci installed (node_modules/.bin/node, as npm start does) or install Node.js 24\n',
  );
  process.exit(1);
}
