// The two table backends, for suites that must hold on each: options for startDivert
// and a cleanup that drops the Redis keys the suite created.

import { dropPrefix, testRedis, uniquePrefix } from './redis.js';

export interface Backend {
  options: Record<string, unknown>;
  cleanup(): Promise<void>;
}

export const BACKENDS: [string, (label: string) => Promise<Backend>][] = [
  ['memory', async () => ({ options: {}, cleanup: async () => {} })],
  [
    'redis',
    async (label) => {
      const redis = await testRedis();
      const prefix = uniquePrefix(label);
      return {
        options: { redis: redis.url, 'redis-prefix': prefix },
        cleanup: async () => {
          await dropPrefix(redis.url, prefix);
          await redis.stop();
        },
      };
    },
  ],
];
