// The benches' environment knobs: a whole number from the environment, or its default; a
// bad value stops the bench with a one-line message (exit 2).

export function positive(name: string, fallback: number): number {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const value = Number(raw);
  if (!Number.isInteger(value) || value < 1) {
    process.stderr.write(`bench: ${name} must be a positive integer, got "${raw}"\n`);
    process.exit(2);
  }
  return value;
}
