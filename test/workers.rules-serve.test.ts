// The local-rules suite again, with two worker processes behind the port: each compiles the rules itself.
process.env.DIVERT_TEST_WORKERS = '2';
await import('./rules-serve.test.js');
