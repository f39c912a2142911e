import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { waitFor } from './environment.js';
import { freePort } from './ports.js';

// Real Redis topologies for tests: a Redis Cluster (masters and replicas) or a primary with
// replicas watched by Sentinels, every node a redis-server child process of the test on free
// loopback ports, with its own folder under one temporary directory and no persistence. A node
// can be killed (SIGKILL, by pid) and the failover that follows awaited. Everything started is
// killed and its folder removed by `stop()`, also when a start fails half-way.

/** One redis-server (or sentinel) process we started. */
export interface RedisNode {
  port: number;
  pid: number;
  /** 'master' or 'replica' as started; the live role can differ after a failover (`role()`). */
  startedAs: 'master' | 'replica' | 'sentinel';
  dir: string;
  child: ChildProcess;
  /** The node's output, kept for failure messages (bounded). */
  output: string[];
}

function alive(node: RedisNode): boolean {
  return node.child.exitCode === null && node.child.signalCode === null;
}

/** Runs one command with redis-cli against a loopback port; its raw reply, or undefined when the node does not answer. */
export async function redisCommand(port: number, ...args: string[]): Promise<string | undefined> {
  return new Promise((resolve) => {
    execFile(
      'redis-cli',
      ['-h', '127.0.0.1', '-p', String(port), ...args],
      { timeout: 2000, encoding: 'utf8' },
      (err, stdout) => {
        // redis-cli exits 0 for error replies too; a node that does not answer is an error.
        if (err || stdout.startsWith('Could not connect')) resolve(undefined);
        else resolve(stdout);
      },
    );
  });
}

/** Runs redis-cli with `args` (no port), resolves with its output or rejects with it. */
async function redisCli(args: string[], timeoutMs: number): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile('redis-cli', args, { timeout: timeoutMs, encoding: 'utf8' }, (err, stdout, stderr) => {
      if (err) reject(new Error(`redis-cli ${args.join(' ')} failed: ${err.message}\n${stdout}\n${stderr}`));
      else resolve(stdout);
    });
  });
}

/** `field:value` lines of an INFO-like reply. */
function infoFields(reply: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of reply.split(/\r?\n/)) {
    const at = line.indexOf(':');
    if (at > 0) fields.set(line.slice(0, at), line.slice(at + 1).trim());
  }
  return fields;
}

/** Alternating field and value lines (raw replies of SENTINEL MASTER and the like). */
function pairs(reply: string): Map<string, string> {
  const lines = reply.split(/\r?\n/);
  const fields = new Map<string, string>();
  for (let i = 0; i + 1 < lines.length; i += 2) fields.set(lines[i] ?? '', lines[i + 1] ?? '');
  return fields;
}

/** Free loopback ports, all distinct. */
async function freePorts(count: number): Promise<number[]> {
  const ports = new Set<number>();
  while (ports.size < count) ports.add(await freePort());
  return [...ports];
}

/** The processes of one topology and the folder holding theirs. */
class NodeSet {
  readonly nodes: RedisNode[] = [];
  constructor(readonly dir: string) {}

  /** Starts redis-server with `args(dir)`, `dir` the node's own new folder. */
  async spawn(
    port: number,
    startedAs: RedisNode['startedAs'],
    args: (dir: string) => string[] | Promise<string[]>,
  ): Promise<RedisNode> {
    const dir = join(this.dir, `${startedAs}-${port}`);
    await mkdir(dir, { recursive: true });
    const child = spawn('redis-server', await args(dir), { cwd: dir, stdio: ['ignore', 'pipe', 'pipe'] });
    const output: string[] = [];
    const keep = (chunk: Buffer) => {
      output.push(chunk.toString());
      if (output.length > 400) output.splice(0, 200);
    };
    child.stdout?.on('data', keep);
    child.stderr?.on('data', keep);
    // A failed spawn is seen by the wait for the node to answer; keep it from being unhandled.
    child.on('error', (err) => keep(Buffer.from(`spawn failed: ${err.message}\n`)));
    const node: RedisNode = { port, pid: child.pid ?? 0, startedAs, dir, child, output };
    this.nodes.push(node);
    return node;
  }

  byPort(port: number): RedisNode {
    const node = this.nodes.find((candidate) => candidate.port === port);
    if (!node) throw new Error(`no node on port ${port}`);
    return node;
  }

  async kill(port: number): Promise<void> {
    const node = this.byPort(port);
    if (!alive(node)) return;
    const exited = once(node.child, 'exit');
    process.kill(node.pid, 'SIGKILL');
    await exited;
  }

  async waitUntilAnswering(node: RedisNode): Promise<void> {
    await waitFor(
      async () => {
        if (!alive(node)) throw new Error(`redis-server on ${node.port} exited:\n${node.output.join('')}`);
        return (await redisCommand(node.port, 'PING'))?.trim() === 'PONG' ? true : undefined;
      },
      15_000,
      `redis-server on ${node.port}`,
    );
  }

  /** The last lines each node wrote, for a failure message. */
  logs(): string {
    return this.nodes
      .map((node) => `--- ${node.startedAs} ${node.port} (pid ${node.pid}):\n${node.output.join('').slice(-2000)}`)
      .join('\n');
  }

  async stop(): Promise<void> {
    await Promise.all(
      this.nodes.map(async (node) => {
        if (!alive(node) || !node.pid) return;
        const exited = once(node.child, 'exit');
        process.kill(node.pid, 'SIGKILL');
        await exited;
      }),
    );
    await rm(this.dir, { recursive: true, force: true });
  }
}

/** Runs `start` on a fresh NodeSet; kills what it started and removes its folder if it throws. */
async function starting<T>(prefix: string, start: (set: NodeSet) => Promise<T>): Promise<T> {
  const set = new NodeSet(await mkdtemp(join(tmpdir(), prefix)));
  try {
    return await start(set);
  } catch (err) {
    const logs = set.logs();
    await set.stop();
    if (err instanceof Error) err.message += `\n${logs}`;
    throw err;
  }
}

/** Common arguments of every data node: loopback only, no persistence. */
function dataNodeArgs(port: number, dir: string): string[] {
  return ['--port', String(port), '--bind', '127.0.0.1', '--dir', dir, '--save', '', '--appendonly', 'no'];
}

// ---------------------------------------------------------------- Redis Cluster

/** One line of CLUSTER NODES. */
export interface ClusterNodeEntry {
  id: string;
  port: number;
  flags: string[];
  /** The master's id for a replica, '-' for a master. */
  masterId: string;
  /** Slot ranges served (masters), as [first, last]. */
  slots: [number, number][];
}

export function parseClusterNodes(reply: string): ClusterNodeEntry[] {
  return reply
    .split(/\r?\n/)
    .filter((line) => line.trim() !== '')
    .map((line) => {
      const [id = '', address = '', flags = '', masterId = '', , , , , ...slotFields] = line.split(' ');
      const port = Number(address.split('@')[0]?.split(':').pop());
      const slots = slotFields
        .filter((field) => !field.startsWith('['))
        .map((field): [number, number] => {
          const [first = '0', last] = field.split('-');
          return [Number(first), Number(last ?? first)];
        });
      return { id, port, flags: flags.split(','), masterId, slots };
    });
}

export interface RedisClusterTopology {
  nodes: RedisNode[];
  /** `127.0.0.1:p1,127.0.0.1:p2,...`: the value of REDIS_CLUSTER_NODES. */
  nodesVariable: string;
  /** The hash slot of a key (CLUSTER KEYSLOT), e.g. `{coffer}`. */
  slotOf(key: string): Promise<number>;
  /** The port of the master serving `slotOrKey` now, as a live node sees it. */
  masterOf(slotOrKey: number | string): Promise<number>;
  /** The ports of the replicas of the master on `port`, as a live node sees it. */
  replicasOf(port: number): Promise<number[]>;
  /** CLUSTER NODES as seen by a live node. */
  clusterNodes(): Promise<ClusterNodeEntry[]>;
  /** The ports of the nodes still running. */
  livePorts(): number[];
  /** SIGKILLs the node on `port` (by pid) and waits for it to exit. */
  killNode(port: number): Promise<void>;
  /**
   * Waits until a replica of the (killed) master on `deadPort` is a master and every live
   * node reports `cluster_state:ok`; returns the new master's port. Call `replicasOf` before
   * the kill and pass them, or they are read from a live node's view of the dead one.
   */
  waitForFailover(deadPort: number, timeoutMs?: number, replicas?: number[]): Promise<number>;
  stop(): Promise<void>;
}

export interface ClusterOptions {
  masters?: number;
  replicasPerMaster?: number;
  /** cluster-node-timeout: how long a node may be silent before it is failed. Default 1000 ms. */
  nodeTimeoutMs?: number;
}

export async function startRedisCluster(options: ClusterOptions = {}): Promise<RedisClusterTopology> {
  const masters = options.masters ?? 3;
  const replicasPerMaster = options.replicasPerMaster ?? 1;
  const nodeTimeoutMs = options.nodeTimeoutMs ?? 1000;
  const count = masters * (1 + replicasPerMaster);
  return starting('coffer-redis-cluster-', async (set) => {
    // Client ports and cluster bus ports (the default bus port, port + 10000, may not exist).
    const ports = await freePorts(count * 2);
    const started: RedisNode[] = [];
    for (let i = 0; i < count; i++) {
      const port = ports[i] ?? 0;
      started.push(
        await set.spawn(port, i < masters ? 'master' : 'replica', (dir) => [
          ...dataNodeArgs(port, dir),
          '--cluster-enabled',
          'yes',
          '--cluster-config-file',
          join(dir, 'nodes.conf'),
          '--cluster-port',
          String(ports[count + i]),
          '--cluster-node-timeout',
          String(nodeTimeoutMs),
          // A replica may take over however long it was away from its master: tests kill masters on purpose.
          '--cluster-replica-validity-factor',
          '0',
        ]),
      );
    }
    await Promise.all(started.map((node) => set.waitUntilAnswering(node)));
    // redis-cli makes the first `masters` addresses masters and gives each its replicas.
    await redisCli(
      [
        '--cluster',
        'create',
        ...started.map((node) => `127.0.0.1:${node.port}`),
        '--cluster-replicas',
        String(replicasPerMaster),
        '--cluster-yes',
      ],
      60_000,
    );
    const topology = clusterTopology(set, started);
    await waitFor(
      async () => {
        for (const node of started) {
          const info = infoFields((await redisCommand(node.port, 'CLUSTER', 'INFO')) ?? '');
          if (info.get('cluster_state') !== 'ok' || info.get('cluster_slots_ok') !== '16384') return undefined;
          if (info.get('cluster_known_nodes') !== String(count)) return undefined;
          // Every replica in sync with its master, so it can take over.
          const replication = infoFields((await redisCommand(node.port, 'INFO', 'replication')) ?? '');
          if (replication.get('role') === 'slave' && replication.get('master_link_status') !== 'up') return undefined;
        }
        const view = await topology.clusterNodes();
        const masterEntries = view.filter((entry) => entry.flags.includes('master'));
        const replicaEntries = view.filter((entry) => entry.flags.includes('slave'));
        return masterEntries.length === masters && replicaEntries.length === masters * replicasPerMaster
          ? true
          : undefined;
      },
      30_000,
      'the Redis Cluster to report cluster_state:ok on every node',
    );
    return topology;
  });
}

function clusterTopology(set: NodeSet, started: RedisNode[]): RedisClusterTopology {
  const livePorts = () => started.filter(alive).map((node) => node.port);
  /** Asks live nodes in turn until one answers. */
  async function ask(...args: string[]): Promise<string> {
    for (const port of livePorts()) {
      const reply = await redisCommand(port, ...args);
      if (reply !== undefined && !reply.startsWith('ERR')) return reply;
    }
    throw new Error(`no live cluster node answered ${args.join(' ')}`);
  }
  const clusterNodes = async () => parseClusterNodes(await ask('CLUSTER', 'NODES'));
  const slotOf = async (key: string) => Number((await ask('CLUSTER', 'KEYSLOT', key)).trim());
  const topology: RedisClusterTopology = {
    nodes: started,
    nodesVariable: started.map((node) => `127.0.0.1:${node.port}`).join(','),
    slotOf,
    clusterNodes,
    livePorts,
    async masterOf(slotOrKey) {
      const slot = typeof slotOrKey === 'number' ? slotOrKey : await slotOf(slotOrKey);
      const owner = (await clusterNodes()).find(
        (entry) =>
          entry.flags.includes('master') &&
          !entry.flags.includes('fail') &&
          entry.slots.some(([first, last]) => first <= slot && slot <= last),
      );
      if (!owner) throw new Error(`no master serves slot ${slot}`);
      return owner.port;
    },
    async replicasOf(port) {
      const view = await clusterNodes();
      const master = view.find((entry) => entry.port === port);
      return view.filter((entry) => master && entry.masterId === master.id).map((entry) => entry.port);
    },
    killNode: (port) => set.kill(port),
    async waitForFailover(deadPort, timeoutMs = 30_000, replicas) {
      const candidates = replicas ?? (await topology.replicasOf(deadPort));
      if (candidates.length === 0) throw new Error(`the master on ${deadPort} has no replica to take over`);
      try {
        return await waitFor(
          async () => {
            let promoted: number | undefined;
            for (const port of candidates) {
              const role = (await redisCommand(port, 'ROLE'))?.split(/\r?\n/)[0];
              if (role === 'master') promoted = port;
            }
            if (promoted === undefined) return undefined;
            for (const port of livePorts()) {
              const info = infoFields((await redisCommand(port, 'CLUSTER', 'INFO')) ?? '');
              if (info.get('cluster_state') !== 'ok') return undefined;
            }
            return promoted;
          },
          timeoutMs,
          `a replica of ${deadPort} (${candidates.join(', ')}) to take over and every node to report cluster_state:ok`,
        );
      } catch (err) {
        if (err instanceof Error) err.message += `\n${set.logs()}`;
        throw err;
      }
    },
    stop: () => set.stop(),
  };
  return topology;
}

// ---------------------------------------------------------------- Sentinel

export interface RedisSentinelTopology {
  /** `127.0.0.1:s1,127.0.0.1:s2,...`: the value of REDIS_SENTINELS. */
  sentinelsVariable: string;
  /** The monitored master's name (REDIS_SENTINEL_NAME). */
  name: string;
  nodes: RedisNode[];
  sentinels: RedisNode[];
  /** The port of the current primary, as the sentinels know it. */
  masterPort(): number;
  /** SIGKILLs the current primary (by pid) and waits for it to exit; returns its port. */
  killMaster(): Promise<number>;
  /**
   * Waits until every live sentinel names a primary other than the one on `oldPort` (default: the
   * last killed) and that node answers ROLE as master; returns its port.
   */
  waitForFailover(oldPort?: number, timeoutMs?: number): Promise<number>;
  stop(): Promise<void>;
}

export interface SentinelOptions {
  replicas?: number;
  sentinels?: number;
  name?: string;
  /** down-after-milliseconds. Default 1000 ms. */
  downAfterMs?: number;
}

export async function startRedisSentinel(options: SentinelOptions = {}): Promise<RedisSentinelTopology> {
  const replicas = options.replicas ?? 1;
  const sentinelCount = options.sentinels ?? 3;
  const name = options.name ?? 'mymaster';
  const downAfterMs = options.downAfterMs ?? 1000;
  const quorum = Math.floor(sentinelCount / 2) + 1;
  return starting('coffer-redis-sentinel-', async (set) => {
    const ports = await freePorts(1 + replicas + sentinelCount);
    const [masterPortNumber = 0] = ports;
    const master = await set.spawn(masterPortNumber, 'master', (dir) => dataNodeArgs(masterPortNumber, dir));
    await set.waitUntilAnswering(master);
    const replicaNodes: RedisNode[] = [];
    for (const port of ports.slice(1, 1 + replicas)) {
      replicaNodes.push(
        await set.spawn(port, 'replica', (dir) => [
          ...dataNodeArgs(port, dir),
          '--replicaof',
          '127.0.0.1',
          String(masterPortNumber),
        ]),
      );
    }
    await Promise.all(replicaNodes.map((node) => set.waitUntilAnswering(node)));
    await waitFor(
      async () => {
        for (const node of replicaNodes) {
          const replication = infoFields((await redisCommand(node.port, 'INFO', 'replication')) ?? '');
          if (replication.get('master_link_status') !== 'up') return undefined;
        }
        return true;
      },
      15_000,
      'the replicas to sync with the primary',
    );

    const sentinels: RedisNode[] = [];
    for (const port of ports.slice(1 + replicas)) {
      sentinels.push(
        await set.spawn(port, 'sentinel', async (dir) => {
          // Sentinel rewrites its configuration file, so each has its own, in its folder.
          const conf = join(dir, 'sentinel.conf');
          await writeFile(
            conf,
            [
              `port ${port}`,
              'bind 127.0.0.1',
              `dir ${dir}`,
              `sentinel monitor ${name} 127.0.0.1 ${masterPortNumber} ${quorum}`,
              `sentinel down-after-milliseconds ${name} ${downAfterMs}`,
              `sentinel failover-timeout ${name} 5000`,
              `sentinel parallel-syncs ${name} 1`,
              '',
            ].join('\n'),
          );
          return [conf, '--sentinel'];
        }),
      );
    }
    await Promise.all(sentinels.map((node) => set.waitUntilAnswering(node)));
    // Every sentinel knows the replicas and the other sentinels, so any of them can lead a failover.
    await waitFor(
      async () => {
        for (const sentinel of sentinels) {
          const fields = pairs((await redisCommand(sentinel.port, 'SENTINEL', 'MASTER', name)) ?? '');
          if (fields.get('num-slaves') !== String(replicas)) return undefined;
          if (fields.get('num-other-sentinels') !== String(sentinelCount - 1)) return undefined;
          if ((await redisCommand(sentinel.port, 'SENTINEL', 'CKQUORUM', name))?.startsWith('OK') !== true)
            return undefined;
        }
        return true;
      },
      30_000,
      'every sentinel to know the replicas and the other sentinels',
    );

    let currentMaster = masterPortNumber;
    let lastKilled: number | undefined;
    const liveSentinels = () => sentinels.filter(alive);
    const topology: RedisSentinelTopology = {
      sentinelsVariable: sentinels.map((node) => `127.0.0.1:${node.port}`).join(','),
      name,
      nodes: set.nodes.filter((node) => node.startedAs !== 'sentinel'),
      sentinels,
      masterPort: () => currentMaster,
      async killMaster() {
        const port = currentMaster;
        await set.kill(port);
        lastKilled = port;
        return port;
      },
      async waitForFailover(oldPort = lastKilled ?? currentMaster, timeoutMs = 30_000) {
        try {
          currentMaster = await waitFor(
            async () => {
              const named = new Set<number>();
              for (const sentinel of liveSentinels()) {
                const reply = await redisCommand(sentinel.port, 'SENTINEL', 'GET-MASTER-ADDR-BY-NAME', name);
                named.add(Number(reply?.split(/\r?\n/)[1]));
              }
              const [port] = [...named];
              if (named.size !== 1 || port === undefined || port === oldPort || Number.isNaN(port)) return undefined;
              const role = (await redisCommand(port, 'ROLE'))?.split(/\r?\n/)[0];
              return role === 'master' ? port : undefined;
            },
            timeoutMs,
            `the sentinels to promote a new primary in place of ${oldPort}`,
          );
        } catch (err) {
          if (err instanceof Error) err.message += `\n${set.logs()}`;
          throw err;
        }
        return currentMaster;
      },
      stop: () => set.stop(),
    };
    return topology;
  });
}
