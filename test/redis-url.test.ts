// parseRedisUrl: the URL forms RedisTable.connect accepts, and the ones it refuses.

import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { isDivertError } from '../src/errors.js';
import { parseRedisUrl } from '../src/table/redis/redis-url.js';

describe('parseRedisUrl', () => {
  it('passes redis:// and rediss:// through as written, with the password decoded', () => {
    assert.deepEqual(parseRedisUrl('redis://127.0.0.1:6379'), { kind: 'standalone', url: 'redis://127.0.0.1:6379', password: '' });
    assert.deepEqual(parseRedisUrl('rediss://:p%40ss@cache.example:6380/2'), {
      kind: 'standalone',
      url: 'rediss://:p%40ss@cache.example:6380/2',
      password: 'p@ss',
    });
  });

  it('reads Sentinel URLs: sentinels, master name and the master password', () => {
    assert.deepEqual(parseRedisUrl('redis-sentinel://10.0.0.1:26379/mymaster'), {
      kind: 'sentinel',
      sentinels: [{ host: '10.0.0.1', port: 26379 }],
      name: 'mymaster',
      username: '',
      password: '',
    });
    assert.deepEqual(parseRedisUrl('redis-sentinel://:p%40ss:w@s1.example:26379,[::1]:26380,s3:1/prod.main-1'), {
      kind: 'sentinel',
      sentinels: [
        { host: 's1.example', port: 26379 },
        { host: '::1', port: 26380 },
        { host: 's3', port: 1 },
      ],
      name: 'prod.main-1',
      username: '',
      password: 'p@ss:w',
    });
    assert.equal((parseRedisUrl('redis-sentinel://app:pw@h:1/m') as { username: string }).username, 'app');
  });

  it('reads Cluster URLs: the seed nodes and the password', () => {
    assert.deepEqual(parseRedisUrl('redis-cluster://:pw@10.0.0.1:7000,10.0.0.2:7001'), {
      kind: 'cluster',
      nodes: [
        { host: '10.0.0.1', port: 7000 },
        { host: '10.0.0.2', port: 7001 },
      ],
      username: '',
      password: 'pw',
    });
    assert.deepEqual(parseRedisUrl('REDIS-CLUSTER://h:7000'), {
      kind: 'cluster',
      nodes: [{ host: 'h', port: 7000 }],
      username: '',
      password: '',
    });
  });

  const bad: [string, RegExp][] = [
    ['http://h:6379', /expected redis\[s\]:\/\//],
    ['h:6379', /expected redis\[s\]:\/\//],
    ['redis://:secret@', /not a valid URL|no host/],
    ['redis-sentinel://:secret@h:26379', /master name is missing/],
    ['redis-sentinel://:secret@h:26379/', /master name is missing/],
    ['redis-sentinel://:secret@h:26379/a/b', /master name "a\/b"/],
    ['redis-sentinel://:secret@/mymaster', /no HOST:PORT/],
    ['redis-sentinel://:secret@h/mymaster', /"h" is not HOST:PORT/],
    ['redis-sentinel://:secret@h:0/mymaster', /port 0 is not from 1 to 65535/],
    ['redis-cluster://:secret@h:1,,h:2', /"" is not HOST:PORT/],
    ['redis-cluster://:secret@h:65536', /port 65536/],
    ['redis-cluster://:secret@h:x', /"h:x" is not HOST:PORT/],
    ['redis-cluster://:secret@::1:7000', /IPv6 address goes in brackets/],
    ['redis-cluster://:secret@h:7000/0', /cluster URL has no path/],
    ['redis-cluster://:secret@h:7000?tls=true', /query/],
    ['redis-cluster://secret@h:7000', /":PASSWORD"/],
    ['redis-cluster://:%E0%A4%A@h:7000', /%-escape/],
  ];
  for (const [url, reason] of bad) {
    it(`refuses ${url.replace(/secret/, '***')} with BAD_CONFIG, password masked`, () => {
      assert.throws(
        () => parseRedisUrl(url),
        (err: unknown) => {
          assert.ok(isDivertError(err, 'BAD_CONFIG'), String(err));
          assert.match(err.message, reason);
          assert.ok(!err.message.includes('secret'), err.message);
          assert.ok(err.message.startsWith('redis URL "'), err.message);
          return true;
        },
      );
    });
  }
});
