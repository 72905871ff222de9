// The metrics suite again, with two worker processes behind the port: every figure is the sum of both.
process.env.DIVERT_TEST_WORKERS = '2';
await import('./metrics.test.js');
