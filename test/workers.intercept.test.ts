// The intercept suite again, with two worker processes behind the port instead of one process.
process.env.DIVERT_TEST_WORKERS = '2';
await import('./intercept.test.js');
