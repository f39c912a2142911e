import { mkdirSync, writeFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { median } from './timing.js';

/** Whether lower or higher is better decides the ratio's direction: it is always Coffer / baseline. */
export interface CaseResult {
  name: string;
  /** Median of Coffer's runs. */
  coffer: number;
  /** Median of the baseline's runs; null when the case has none. */
  baseline: number | null;
  baselineName: string | null;
  unit: string;
  /**
   * Coffer / baseline (times: lower is better; rates: higher is better): the median of the
   * ratios of the runs made back to back, which a drift of the machine between rounds
   * disturbs less than the ratio of the medians.
   */
  ratio: number | null;
  /** coffer / baseline, for comparison. */
  ratioOfMedians: number | null;
  /** The bound from the issue, on the ratio (or on `coffer` when there is no baseline), e.g. "<= 1.1". */
  target: string;
  met: boolean;
  samples: { coffer: number[]; baseline: number[] };
  /** Request latency in ms (medians over the rounds of each round's p50 and p99), where a case measures it. */
  latencyMs?: CaseLatency;
  note?: string;
}

export interface Latency {
  p50: number;
  p99: number;
}

export interface CaseLatency {
  coffer: Latency;
  baseline?: Latency;
}

export interface CaseSpec {
  name: string;
  unit: string;
  target: string;
  baselineName: string | null;
  coffer: readonly number[];
  baseline?: readonly number[];
  latencyMs?: CaseLatency;
  note?: string;
}

export function caseResult(spec: CaseSpec): CaseResult {
  const coffer = median(spec.coffer);
  const baseline = spec.baseline ? median(spec.baseline) : null;
  const pairs = spec.baseline ? spec.coffer.map((value, run) => value / (spec.baseline?.[run] ?? Number.NaN)) : [];
  const ratio = baseline === null ? null : median(pairs);
  return {
    name: spec.name,
    coffer: round(coffer),
    baseline: baseline === null ? null : round(baseline),
    baselineName: spec.baselineName,
    unit: spec.unit,
    ratio: ratio === null ? null : round(ratio),
    ratioOfMedians: baseline === null ? null : round(coffer / baseline),
    target: spec.target,
    met: meets(ratio ?? coffer, spec.target),
    samples: { coffer: spec.coffer.map(round), baseline: (spec.baseline ?? []).map(round) },
    ...(spec.latencyMs === undefined ? {} : { latencyMs: roundLatency(spec.latencyMs) }),
    ...(spec.note === undefined ? {} : { note: spec.note }),
  };
}

function meets(value: number, target: string): boolean {
  const match = /^(<=|>=|<|>)\s*([\d.]+)$/.exec(target);
  if (!match) throw new Error(`bad target ${target}`);
  const bound = Number(match[2]);
  switch (match[1]) {
    case '<=':
      return value <= bound;
    case '>=':
      return value >= bound;
    case '<':
      return value < bound;
    default:
      return value > bound;
  }
}

function roundLatency(latency: CaseLatency): CaseLatency {
  const each = ({ p50, p99 }: Latency) => ({ p50: round(p50), p99: round(p99) });
  return { coffer: each(latency.coffer), ...(latency.baseline ? { baseline: each(latency.baseline) } : {}) };
}

function round(value: number): number {
  if (!Number.isFinite(value)) return value;
  const digits = Math.abs(value) >= 100 ? 0 : Math.abs(value) >= 10 ? 1 : 3;
  return Number(value.toFixed(digits));
}

export function formatTable(cases: readonly CaseResult[]): string {
  const header = ['case', 'coffer', 'baseline', 'ratio', 'of medians', 'target', 'met'];
  const rows = cases.map((result) => [
    result.name,
    `${result.coffer} ${result.unit}`,
    result.baseline === null ? '—' : `${result.baseline} ${result.unit} (${result.baselineName ?? ''})`,
    result.ratio === null ? '—' : result.ratio.toFixed(2),
    result.ratioOfMedians === null ? '—' : result.ratioOfMedians.toFixed(2),
    result.target,
    result.met ? 'yes' : 'NO',
  ]);
  const widths = header.map((title, column) => Math.max(title.length, ...rows.map((row) => row[column]?.length ?? 0)));
  const line = (cells: readonly string[]) =>
    `| ${cells.map((cell, column) => cell.padEnd(widths[column] ?? 0)).join(' | ')} |`;
  return [line(header), line(widths.map((width) => '-'.repeat(width))), ...rows.map(line)].join('\n');
}

/** The notes under the table: each case's latency and note, by the case's row number. */
export function formatNotes(cases: readonly CaseResult[]): string {
  return cases
    .flatMap((result, index) => {
      const lines: string[] = [];
      const latency = result.latencyMs;
      if (latency) {
        const side = (name: string, { p50, p99 }: Latency) => `${name} p50 ${p50} ms, p99 ${p99} ms`;
        const baseline = latency.baseline ? `; ${side(result.baselineName ?? 'baseline', latency.baseline)}` : '';
        lines.push(`latency: ${side('Coffer', latency.coffer)}${baseline}`);
      }
      if (result.note) lines.push(result.note);
      return lines.length === 0 ? [] : [`${index + 1}. ${result.name}: ${lines.join('; ')}`];
    })
    .join('\n');
}

export function writeResults(file: string, machine: object, cases: readonly CaseResult[]): void {
  mkdirSync(dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify({ machine, cases }, null, 2)}\n`);
}
