// The monitor's Prometheus metrics, in a registry of its own (GET /metrics on --status).

import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { collectProcessMetrics } from '../process-metrics.js';

export type PushResult = 'ok' | 'conflict' | 'error';

export class MonitorMetrics {
  readonly registry = new Registry();
  readonly mirrorUp = new Gauge({
    name: 'divert_monitor_mirror_up',
    help: '1 while a mirror is up, 0 while down (absent until its first check)',
    labelNames: ['service', 'mirror', 'site'],
    registers: [this.registry],
  });
  readonly checkDuration = new Histogram({
    name: 'divert_monitor_check_duration_seconds',
    help: 'time a health check took (a failed one included)',
    labelNames: ['service'],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10],
    registers: [this.registry],
  });
  readonly checks = new Counter({
    name: 'divert_monitor_checks_total',
    help: 'health checks by result',
    labelNames: ['service', 'mirror', 'result'],
    registers: [this.registry],
  });
  readonly load = new Gauge({
    name: 'divert_monitor_mirror_load',
    help: 'the last load figure a mirror reported (0-1)',
    labelNames: ['service', 'mirror'],
    registers: [this.registry],
  });
  readonly pushes = new Counter({
    name: 'divert_monitor_pushes_total',
    help: 'writes to the admin API by result (conflict: someone else changed the name)',
    labelNames: ['service', 'result'],
    registers: [this.registry],
  });
  readonly conflicts = new Counter({
    name: 'divert_monitor_conflicts_total',
    help: 'changes by someone else found on a name the monitor steers (each starts a hold)',
    labelNames: ['service', 'name'],
    registers: [this.registry],
  });
  readonly held = new Gauge({
    name: 'divert_monitor_name_held',
    help: '1 while the monitor leaves a name alone after a manual change',
    labelNames: ['service', 'name'],
    registers: [this.registry],
  });
  readonly answerSize = new Gauge({
    name: 'divert_monitor_service_answer_size',
    help: 'addresses in the answer the monitor wants for a service',
    labelNames: ['service'],
    registers: [this.registry],
  });
  readonly allDown = new Gauge({
    name: 'divert_monitor_service_all_down',
    help: '1 while every mirror of a service is down (its last answer is kept)',
    labelNames: ['service'],
    registers: [this.registry],
  });
  readonly nameQps = new Gauge({
    name: 'divert_monitor_name_queries_per_second',
    help: 'queries divert answered for a steered name, per second over the last queryRates interval',
    labelNames: ['service', 'name'],
    registers: [this.registry],
  });
  readonly passiveFailures = new Counter({
    name: 'divert_monitor_passive_failures_total',
    help: "connect failures divert proxy counted for a mirror (passive health), read from the proxy's GET /v1/stats/targets",
    labelNames: ['service', 'mirror'],
    registers: [this.registry],
  });
  readonly passiveProxyUp = new Gauge({
    name: 'divert_monitor_passive_proxy_up',
    help: "1 while a service's passive health reads its proxy, 0 while the proxy cannot be read (passive health paused)",
    labelNames: ['service'],
    registers: [this.registry],
  });
  readonly adminUp = new Gauge({
    name: 'divert_monitor_admin_up',
    help: '1 while the admin API answers, 0 during an outage',
    registers: [this.registry],
  });

  constructor() {
    collectProcessMetrics(this.registry, 'divert_monitor_');
  }
}
