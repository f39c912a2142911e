import { spawnSync } from 'node:child_process';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';

function firstLine(command: string, args: readonly string[]): string {
  const result = spawnSync(command, args, { encoding: 'utf8' });
  return result.status === 0 ? (result.stdout.split('\n')[0] ?? '').trim() : 'unavailable';
}

/** The file system type and mount options of the mount holding `dir`. */
function mountOf(dir: string): string {
  const mounts = readFileSync('/proc/mounts', 'utf8')
    .split('\n')
    .map((line) => line.split(' '))
    .filter((fields) => fields.length >= 4 && dir.startsWith(fields[1] ?? '\0'))
    .sort((a, b) => (b[1]?.length ?? 0) - (a[1]?.length ?? 0));
  const [device, mountPoint, type, options] = mounts[0] ?? [];
  return `${type ?? '?'} on ${device ?? '?'} at ${mountPoint ?? '?'} (${options ?? ''})`;
}

export interface MachineDescription {
  cpu: string;
  cores: number;
  memoryGiB: number;
  kernel: string;
  node: string;
  fileSystem: string;
  cp: string;
  rsync: string;
  loadAverageAtStart: number[];
  method: string;
}

export function describeMachine(benchDir: string): MachineDescription {
  return {
    cpu: os.cpus()[0]?.model ?? 'unknown',
    cores: os.availableParallelism(),
    memoryGiB: Math.round(os.totalmem() / 2 ** 30),
    kernel: os.release(),
    node: process.version,
    fileSystem: mountOf(benchDir),
    cp: firstLine('cp', ['--version']),
    rsync: firstLine('rsync', ['--version']),
    loadAverageAtStart: os.loadavg().map((load) => Number(load.toFixed(2))),
    method:
      'warm page cache (one untimed run of each side first); `sync` before every timed run; ' +
      'Coffer and its baseline interleaved in rotating order; medians',
  };
}

/** The benchmark needs rsync as a baseline; it comes from Debian when missing. */
export function ensureRsync(): void {
  if (spawnSync('rsync', ['--version']).status === 0) return;
  console.log('installing rsync (apt-get)…');
  let install = spawnSync('apt-get', ['install', '-y', 'rsync'], { stdio: 'inherit' });
  if (install.status !== 0) {
    spawnSync('apt-get', ['update'], { stdio: 'inherit' });
    install = spawnSync('apt-get', ['install', '-y', 'rsync'], { stdio: 'inherit' });
  }
  if (install.status !== 0) throw new Error('rsync is missing and could not be installed');
}

const PROBE_FILES = 2000;
// Creating a small file normally costs ~15 µs here; right after a large delete it can cost ten times more for a minute or two.
const SETTLED_US_PER_FILE = 60;
const SETTLE_LIMIT_MS = 120_000;

/**
 * Waits until creating files costs what it normally does: right after a large delete (an
 * earlier run's outputs, or another program's) ext4 here creates files ~10× slower for a while.
 * The probe files are left in `scratch` (removed with the outputs, at the end).
 */
export async function waitForSettledFileSystem(scratch: string): Promise<{ usPerFile: number; waitedMs: number }> {
  const started = performance.now();
  for (let probe = 0; ; probe += 1) {
    const dir = join(scratch, `probe-${probe}`);
    mkdirSync(dir, { recursive: true });
    const t = performance.now();
    for (let i = 0; i < PROBE_FILES; i += 1) writeFileSync(join(dir, String(i)), 'x');
    const usPerFile = ((performance.now() - t) * 1000) / PROBE_FILES;
    const waitedMs = Math.round(performance.now() - started);
    if (usPerFile <= SETTLED_US_PER_FILE || waitedMs > SETTLE_LIMIT_MS) return { usPerFile, waitedMs };
    console.log(`  file system busy (${usPerFile.toFixed(0)} µs per file created); waiting…`);
    await sleep(5000);
  }
}
