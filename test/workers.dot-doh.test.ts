// The DoT and DoH suite again, with two worker processes behind the ports instead of one process.
process.env.DIVERT_TEST_WORKERS = '2';
await import('./dot-doh.test.js');
