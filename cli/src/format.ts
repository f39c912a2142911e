import type { JobProgress, JobView } from './views.js';

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB'];

/** 1536 → "1.5 KiB". */
export function formatBytes(bytes: number): string {
  let value = bytes;
  let unit = 0;
  while (value >= 1024 && unit < UNITS.length - 1) {
    value /= 1024;
    unit++;
  }
  return unit === 0 ? `${value} B` : `${value.toFixed(1)} ${UNITS[unit]}`;
}

/** "3/10 files, 1.0 MiB/4.0 MiB" (the totals are 0 until the worker has counted them). */
export function formatProgress(progress: JobProgress): string {
  const files = progress.filesTotal > 0 ? `${progress.files}/${progress.filesTotal}` : String(progress.files);
  const bytes =
    progress.bytesTotal > 0
      ? `${formatBytes(progress.bytes)}/${formatBytes(progress.bytesTotal)}`
      : formatBytes(progress.bytes);
  return `${files} files, ${bytes}${formatPace(progress)}`;
}

/** ", 12.0 MiB/s, 0:42 left" while the job moves; empty until the API knows a rate. */
export function formatPace(progress: JobProgress): string {
  if (!progress.bytesPerSecond) return '';
  const rate = `, ${formatBytes(progress.bytesPerSecond)}/s`;
  return progress.etaSeconds == null ? rate : `${rate}, ${formatDuration(progress.etaSeconds)} left`;
}

/** Seconds as m:ss, or h:mm:ss from an hour on. */
export function formatDuration(seconds: number): string {
  const whole = Math.max(0, Math.round(seconds));
  const [h, m, s] = [Math.floor(whole / 3600), Math.floor((whole % 3600) / 60), whole % 60];
  const mmss = `${String(m).padStart(h > 0 ? 2 : 1, '0')}:${String(s).padStart(2, '0')}`;
  return h > 0 ? `${h}:${mmss}` : mmss;
}

/** Left-aligned columns separated by two spaces, with a header row. */
export function formatTable(headers: readonly string[], rows: readonly (readonly string[])[]): string {
  const widths = headers.map((header, column) =>
    Math.max(header.length, ...rows.map((row) => (row[column] ?? '').length)),
  );
  const line = (cells: readonly string[]): string =>
    cells
      .map((cell, column) => (column === cells.length - 1 ? cell : cell.padEnd(widths[column] ?? 0)))
      .join('  ')
      .trimEnd();
  return [line(headers), ...rows.map(line)].join('\n');
}

/** "key  value" lines, skipping absent values. */
export function formatFields(fields: readonly (readonly [string, string | null | undefined])[]): string {
  const present = fields.filter((field): field is readonly [string, string] => field[1] != null && field[1] !== '');
  const width = Math.max(...present.map(([key]) => key.length));
  return present.map(([key, value]) => `${key.padEnd(width)}  ${value}`).join('\n');
}

/** The one-line outcome of a finished job. */
export function formatOutcome(view: JobView): string {
  const base = `${view.kind} job ${view.id} ${view.status}`;
  if (view.status === 'completed') return `${base}: ${formatProgress(view.progress)}`;
  return view.error ? `${base}: ${view.error.code}: ${view.error.message}` : base;
}

export function orDash(value: string | number | null | undefined): string {
  return value === null || value === undefined || value === '' ? '-' : String(value);
}
