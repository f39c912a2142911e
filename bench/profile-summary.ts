/**
 * Where a process's CPU time went, from the profiles `BENCH_PROFILE_DIR` makes: for each
 * `.cpuprofile`, the share of idle, garbage collection and each package or own module in the
 * busy time, and the functions that cost most themselves.
 *
 *   BENCH_PROFILE_DIR=/tmp/prof pnpm bench e2e && pnpm bench:profile /tmp/prof
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';

interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
}
interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const TOP_FUNCTIONS = 12;

/** The package or own module a frame belongs to: `bullmq`, `worker/copy/snapshot.js`, `node internals`, `(idle)`. */
function ownerOf({ url, functionName }: ProfileNode['callFrame']): string {
  if (url === '') return functionName.startsWith('(') ? functionName : 'native';
  if (url.startsWith('node:')) return 'node internals';
  const dependency = /node_modules\/(?:\.pnpm\/[^/]+\/node_modules\/)?((?:@[^/]+\/)?[^/]+)/.exec(url);
  if (dependency) return dependency[1] ?? url;
  const own = /\/(api|worker|shared|db|cli)\/dist\/(.+)$/.exec(url);
  return own ? `${own[1]}/${own[2]}` : url.replace(/^file:\/\//, '');
}

function summarize(file: string): string {
  const profile = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map(profile.nodes.map((node) => [node.id, node]));
  const owners = new Map<string, number>();
  const functions = new Map<string, number>();
  let total = 0;
  profile.samples.forEach((id, index) => {
    const delta = profile.timeDeltas[index] ?? 0;
    const frame = byId.get(id)?.callFrame;
    if (!frame) return;
    total += delta;
    const owner = ownerOf(frame);
    owners.set(owner, (owners.get(owner) ?? 0) + delta);
    const name = `${frame.functionName || '(anonymous)'} ${owner}:${frame.lineNumber + 1}`;
    functions.set(name, (functions.get(name) ?? 0) + delta);
  });
  const idle = owners.get('(idle)') ?? 0;
  const busy = total - idle;
  const share = (micros: number) => `${((100 * micros) / Math.max(busy, 1)).toFixed(1)} %`;
  const lines = [
    `${file}: ${(total / 1e6).toFixed(1)} s sampled, ${((100 * idle) / Math.max(total, 1)).toFixed(0)} % idle; of the busy time:`,
  ];
  const ranked = (map: Map<string, number>, count: number) =>
    [...map]
      .filter(([name]) => name !== '(idle)' && !name.startsWith('(idle)'))
      .sort((a, b) => b[1] - a[1])
      .slice(0, count);
  for (const [owner, micros] of ranked(owners, 15)) lines.push(`  ${share(micros).padStart(7)}  ${owner}`);
  lines.push('  functions by their own time:');
  for (const [name, micros] of ranked(functions, TOP_FUNCTIONS)) lines.push(`  ${share(micros).padStart(7)}  ${name}`);
  return lines.join('\n');
}

const dir = process.argv[2] ?? process.env.BENCH_PROFILE_DIR;
if (!dir) {
  console.error('usage: pnpm bench:profile <folder of .cpuprofile files>');
  process.exit(2);
}
for (const name of readdirSync(dir)
  .filter((entry) => entry.endsWith('.cpuprofile'))
  .sort()) {
  console.log(summarize(join(dir, name)));
}
