import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { parse } from 'yaml';
import { REPO_ROOT } from './helpers/repo.js';

// The Grafana dashboards and the Prometheus alert rules against the series the code really
// exports: a renamed metric must not leave an empty panel or a rule that can never fire.

const DASHBOARDS = join(REPO_ROOT, 'compose/grafana/dashboards');
const METRIC_SOURCES = ['api/src/plugins/metrics.ts', 'worker/src/metrics.ts'];

interface Target {
  expr?: string;
  rawSql?: string;
  datasource: { type: string; uid: string };
}
interface Panel {
  id: number;
  title: string;
  datasource: { type: string; uid: string };
  targets: Target[];
}
interface Variable {
  name: string;
  type: string;
  query: string | { query: string };
  datasource?: { type: string; uid: string };
}
interface Dashboard {
  uid: string;
  title: string;
  panels: Panel[];
  templating: { list: Variable[] };
}

/**
 * Metric names the code registers, with a histogram's series: every quoted `'coffer_…'` in the
 * metrics modules (`name: 'coffer_…'`, and the names the snapshot gauges' helper is called with).
 */
async function exportedMetrics(): Promise<Set<string>> {
  const names = new Set<string>();
  for (const file of METRIC_SOURCES) {
    const source = await readFile(join(REPO_ROOT, file), 'utf8');
    for (const [, name] of source.matchAll(/'(coffer_[a-z0-9_]*[a-z0-9])'/g)) {
      if (name === undefined) continue;
      names.add(name);
      for (const suffix of ['_bucket', '_sum', '_count']) names.add(`${name}${suffix}`);
    }
  }
  return names;
}

/** The coffer_… metric names a PromQL expression reads. */
function metricsIn(expr: string): string[] {
  return [...expr.matchAll(/\bcoffer_[a-z0-9_]+\b/g)].map(([name]) => name);
}

/** A variable's query text, whichever shape Grafana stored it in. */
function queryOf(variable: Variable): string {
  return typeof variable.query === 'string' ? variable.query : variable.query.query;
}

/** Whether a PromQL expression's coffer_jobs_finished_total selectors all leave `rejected` out. */
function promLeavesOutRejected(expr: string): boolean {
  const selectors = [...expr.matchAll(/coffer_jobs_finished_total(\{[^}]*\})?/g)].map(([, labels]) => labels ?? '');
  return selectors.every(
    (labels) =>
      labels.includes('status!="rejected"') ||
      // An exact status other than rejected.
      /status="(?!rejected")[a-z]+"/.test(labels),
  );
}

/** Whether SQL over the log counts only jobs' final statuses, never the API's refusals (`rejected`). */
function sqlLeavesOutRejected(sql: string): boolean {
  const lists = [...sql.matchAll(/\bstatus\s+IN\s*\(([^)]*)\)/gi)].map(([, list]) => list ?? '');
  if (lists.length === 0) return false; // every status, rejected included
  return lists.every((list) => !/'rejected'/.test(list)) && !/status\s*=\s*'rejected'/i.test(sql);
}

let exported: Set<string>;
const dashboards = new Map<string, Dashboard>();

beforeAll(async () => {
  exported = await exportedMetrics();
  for (const file of (await readdir(DASHBOARDS)).filter((name) => name.endsWith('.json'))) {
    dashboards.set(file, JSON.parse(await readFile(join(DASHBOARDS, file), 'utf8')) as Dashboard);
  }
});

describe('the metric names the code exports', () => {
  it('are found where this test looks for them', () => {
    for (const name of [
      'coffer_jobs_finished_total',
      'coffer_snapshots',
      'coffer_log_outbox_rows',
      'coffer_worker_copied_bytes_total',
      'coffer_worker_job_duration_seconds_bucket',
    ]) {
      expect(exported, name).toContain(name);
    }
  });
});

describe('Grafana dashboards', () => {
  it('are valid JSON with unique uids and unique panel ids', () => {
    expect(dashboards.size).toBeGreaterThan(0);
    const uids = [...dashboards.values()].map((dashboard) => dashboard.uid);
    expect(new Set(uids).size).toBe(uids.length);
    for (const [file, dashboard] of dashboards) {
      const ids = dashboard.panels.map((panel) => panel.id);
      expect(new Set(ids).size, file).toBe(ids.length);
    }
  });

  it('query only metrics that the API and the workers export', () => {
    let expressions = 0;
    for (const [file, dashboard] of dashboards) {
      const queries = [
        ...dashboard.panels.flatMap((panel) =>
          panel.targets.filter((target) => target.expr !== undefined).map((target) => [panel.title, target.expr ?? '']),
        ),
        ...dashboard.templating.list
          .filter((variable) => variable.type === 'query' && variable.datasource?.type === 'prometheus')
          .map((variable) => [`variable ${variable.name}`, queryOf(variable)]),
      ];
      for (const [where, expr] of queries) {
        expressions++;
        const names = metricsIn(expr ?? '');
        expect(names.length, `${file}: ${where}: ${expr}`).toBeGreaterThan(0);
        for (const name of names) expect(exported, `${file}: ${where}: ${expr}`).toContain(name);
      }
    }
    expect(expressions).toBeGreaterThan(0);
  });

  it('leave the refused requests (rejected) out of every "jobs finished" panel', () => {
    let checked = 0;
    for (const [file, dashboard] of dashboards) {
      for (const panel of dashboard.panels.filter((candidate) => /jobs finished/i.test(candidate.title))) {
        for (const target of panel.targets) {
          checked++;
          if (target.expr !== undefined)
            expect(promLeavesOutRejected(target.expr), `${file}: ${panel.title}`).toBe(true);
          if (target.rawSql !== undefined) {
            expect(sqlLeavesOutRejected(target.rawSql), `${file}: ${panel.title}`).toBe(true);
          }
        }
      }
    }
    expect(checked).toBeGreaterThan(0);
  });

  it('count bytes copied from the workers, hard-linked files left out', () => {
    const exprs = [...dashboards.values()].flatMap((dashboard) =>
      dashboard.panels
        .filter((panel) => /bytes copied/i.test(panel.title))
        .flatMap((panel) => panel.targets.map((target) => target.expr))
        .filter((expr) => expr !== undefined),
    );
    expect(exprs.length).toBeGreaterThan(0);
    for (const expr of exprs) expect(metricsIn(expr)).toEqual(['coffer_worker_copied_bytes_total']);
  });

  it('filter the per-destination panels by a destination variable', () => {
    const perDestination = /coffer_(snapshots|snapshots_damaged|last_success_timestamp_seconds)\b/;
    for (const [file, dashboard] of dashboards) {
      const panels = dashboard.panels.filter((panel) =>
        panel.targets.some((target) => target.expr !== undefined && perDestination.test(target.expr)),
      );
      if (panels.length === 0) continue;
      const variable = dashboard.templating.list.find((candidate) => candidate.name === 'destination');
      expect(variable && queryOf(variable), file).toBe('label_values(coffer_snapshots, destination)');
      for (const panel of panels) {
        for (const target of panel.targets) expect(target.expr, `${file}: ${panel.title}`).toContain('$destination');
      }
    }
  });

  it('have verify and restore panels: finished by status and durations', () => {
    const exprs = [...dashboards.values()].flatMap((dashboard) =>
      dashboard.panels.flatMap((panel) => panel.targets.map((target) => target.expr ?? '')),
    );
    for (const kind of ['verify', 'restore']) {
      expect(
        exprs.some((expr) => expr.includes(`coffer_jobs_finished_total{kind="${kind}"`)),
        kind,
      ).toBe(true);
      expect(
        exprs.some((expr) => expr.includes(`histogram_quantile(`) && expr.includes(`kind="${kind}"`)),
        kind,
      ).toBe(true);
    }
  });

  it('point Prometheus panels at the dashboard data source variable', () => {
    for (const [file, dashboard] of dashboards) {
      const prometheus = dashboard.panels.filter((panel) => panel.datasource.type === 'prometheus');
      if (prometheus.length === 0) continue;
      const variable = dashboard.templating.list.find((candidate) => candidate.type === 'datasource');
      expect(variable?.query, file).toBe('prometheus');
      for (const panel of prometheus) {
        expect(panel.datasource.uid, `${file}: ${panel.title}`).toBe(`\${${variable?.name ?? ''}}`);
        for (const target of panel.targets) expect(target.datasource).toEqual(panel.datasource);
      }
    }
  });
});

describe('Prometheus alert rules', () => {
  interface Rule {
    alert: string;
    expr: string;
    for?: string;
    annotations: { summary: string; description?: string };
  }
  let rules: Rule[];

  beforeAll(async () => {
    const file = parse(await readFile(join(REPO_ROOT, 'compose/prometheus/alerts.yml'), 'utf8')) as {
      groups: { rules: Rule[] }[];
    };
    rules = file.groups.flatMap((group) => group.rules);
  });

  it('read only metrics that the API and the workers export', () => {
    expect(rules.length).toBeGreaterThan(0);
    for (const rule of rules) {
      for (const name of metricsIn(rule.expr)) expect(exported, `${rule.alert}: ${rule.expr}`).toContain(name);
    }
  });

  it('warn when the log outbox keeps growing: MySQL likely unreachable', () => {
    const rule = rules.find((candidate) => candidate.alert === 'CofferLogOutboxBacklogGrowing');
    expect(rule?.expr).toMatch(/coffer_log_outbox_rows.*> 100/s);
    expect(rule?.expr).toMatch(/deriv\(coffer_log_outbox_rows\[10m\]\)\) > 0/);
    expect(rule?.for).toBe('10m');
    expect(rule?.annotations.description).toMatch(/MySQL is likely unreachable/);
  });
});
