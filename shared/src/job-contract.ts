/**
 * The job contract, schema first: what the API puts on the queue for each kind of job, what
 * the worker returns, and the manifest line a snapshot records per entry. The TypeBox schemas
 * are plain JSON Schema (route schemas and the OpenAPI description reuse them); the types are
 * derived from them, so the two cannot drift apart.
 *
 * Pure: loads no queue, Redis or MySQL code, so the copy engine may import it.
 */
import { Type, type Static, type TSchema } from '@sinclair/typebox';

export const JOB_KINDS = ['backup', 'restore', 'verify', 'prune'] as const;
export type JobKind = (typeof JOB_KINDS)[number];

/** Fields every kind carries. */
const common = {
  /** Name of the API token that submitted the job; every log row of the job records it as `actor`. */
  actor: Type.Optional(Type.String()),
};

export const BackupJobDataSchema = Type.Object({
  ...common,
  source: Type.String(),
  destination: Type.String(),
  /** The submitting token's own roots when it is limited to part of SOURCE_ROOTS; the worker checks the real path against them. */
  sourceRoots: Type.Optional(Type.Array(Type.String())),
  /** Hard-link files unchanged since the destination's previous snapshot instead of copying them. Default true. */
  incremental: Type.Optional(Type.Boolean()),
  /** `.gitignore` patterns, relative to the source folder: matching entries are not copied. */
  exclude: Type.Optional(Type.Array(Type.String())),
  /** The schedule this run belongs to, when a schedule queued it. */
  schedule: Type.Optional(Type.String()),
});
export type BackupJobData = Static<typeof BackupJobDataSchema>;

/** A snapshot as the API found it in the catalog when it queued a restore or verify. */
const snapshotRef = {
  /** The snapshot's id: the id of the backup job that made it. */
  snapshot: Type.String(),
  /** Its folder (`result.path` of that backup). */
  snapshotPath: Type.String(),
  /** The source that backup copied. */
  source: Type.String(),
  destination: Type.String(),
  /** SHA-256 of its manifest as the catalog records it: a manifest that no longer matches is not trusted. */
  manifestSha256: Type.String(),
};

export const VerifyJobDataSchema = Type.Object({ ...common, ...snapshotRef });
export type VerifyJobData = Static<typeof VerifyJobDataSchema>;

export const RestoreJobDataSchema = Type.Object({
  ...common,
  ...snapshotRef,
  /** Absolute folder to restore into, already checked as text against the roots by the API. */
  target: Type.String(),
  /** Entries to restore (relative to the snapshot root); default everything. */
  paths: Type.Optional(Type.Array(Type.String())),
  overwrite: Type.Optional(Type.Boolean()),
  /** The roots the target must lie in (RESTORE_ROOTS narrowed by the token's); the worker checks the real path. */
  targetRoots: Type.Array(Type.String()),
});
export type RestoreJobData = Static<typeof RestoreJobDataSchema>;

export const PruneJobDataSchema = Type.Object({
  ...common,
  destination: Type.String(),
  dryRun: Type.Optional(Type.Boolean()),
});
export type PruneJobData = Static<typeof PruneJobDataSchema>;

/** Each kind's data: the BullMQ job name is the kind. */
export interface JobDataByKind {
  backup: BackupJobData;
  restore: RestoreJobData;
  verify: VerifyJobData;
  prune: PruneJobData;
}

/** One queued job: `{name, data}` as BullMQ holds it, one member per kind. */
export type JobItem = { [K in JobKind]: { name: K; data: JobDataByKind[K] } }[JobKind];

/** A path relative to a snapshot, as text, and its raw bytes when they are not valid UTF-8. */
const displayedPath = {
  /** Decoded as UTF-8 for display (bytes that are not UTF-8 become U+FFFD). */
  path: Type.String(),
  /** The raw bytes in base64, present only when they are not valid UTF-8 (so `path` lost some). */
  pathBase64: Type.Optional(Type.String()),
};

export const BackupWarningsSchema = Type.Object(
  {
    count: Type.Integer({ minimum: 0, description: 'How many entries were left out' }),
    items: Type.Array(
      Type.Object({
        ...displayedPath,
        code: Type.String({
          description: '`ENOENT` (vanished), `EACCES` (could not be read) or `ECHANGED` (changed kind while copied)',
        }),
      }),
      { description: 'The first of them (at most 100)' },
    ),
  },
  { description: 'Entries that vanished or could not be read during the copy and were left out' },
);
export type BackupWarnings = Static<typeof BackupWarningsSchema>;

const totals = {
  files: Type.Integer({ minimum: 0 }),
  bytes: Type.Integer({ minimum: 0 }),
  durationMs: Type.Integer({ minimum: 0 }),
};

export const BackupResultSchema = Type.Object({
  path: Type.String({ description: 'The snapshot folder' }),
  ...totals,
  dirs: Type.Optional(Type.Integer({ minimum: 0 })),
  links: Type.Optional(Type.Integer({ minimum: 0 })),
  skipped: Type.Optional(Type.Integer({ minimum: 0, description: 'Sockets, FIFOs and devices not copied' })),
  filesLinked: Type.Optional(
    Type.Integer({ minimum: 0, description: 'Of `files`, those hard-linked from the previous snapshot' }),
  ),
  bytesLinked: Type.Optional(Type.Integer({ minimum: 0 })),
  excluded: Type.Optional(
    Type.Integer({
      minimum: 0,
      description: 'Entries left out by `exclude` patterns (an excluded folder counts once)',
    }),
  ),
  manifestSha256: Type.Optional(Type.String({ description: "SHA-256 of the snapshot's manifest" })),
  warnings: Type.Optional(BackupWarningsSchema),
});
export type BackupResult = Static<typeof BackupResultSchema>;

export const VerifyResultSchema = Type.Object({ ...totals, damaged: Type.Literal(0) });
export type VerifyResult = Static<typeof VerifyResultSchema>;

export const RestoreResultSchema = Type.Object({ path: Type.String({ description: 'The target' }), ...totals });
export type RestoreResult = Static<typeof RestoreResultSchema>;

export const PruneResultSchema = Type.Object({
  kept: Type.Array(Type.String(), { description: 'Snapshots kept, newest first (those in `held` among them)' }),
  removed: Type.Array(Type.String(), {
    description: 'Snapshots removed, newest first; with `dryRun`, those that would be removed',
  }),
  held: Type.Optional(
    Type.Array(Type.String(), {
      description: 'Snapshots the policy would remove but an unfinished restore or verify reads: kept until it ends',
    }),
  ),
});
export type PruneResult = Static<typeof PruneResultSchema>;

export interface JobResultByKind {
  backup: BackupResult;
  restore: RestoreResult;
  verify: VerifyResult;
  prune: PruneResult;
}
export type JobResult = JobResultByKind[JobKind];

/** Every kind's result, for the job view (`result` is one of them). */
export const JobResultSchemas: Record<JobKind, TSchema> = {
  backup: BackupResultSchema,
  restore: RestoreResultSchema,
  verify: VerifyResultSchema,
  prune: PruneResultSchema,
};

export const JobProgressSchema = Type.Object(
  {
    files: Type.Integer({ minimum: 0 }),
    filesTotal: Type.Integer({ minimum: 0, description: '0 until the totals are known' }),
    bytes: Type.Integer({ minimum: 0 }),
    bytesTotal: Type.Integer({ minimum: 0 }),
    bytesPerSecond: Type.Optional(
      Type.Integer({ minimum: 0, description: 'Recent throughput: bytes per second over the last few seconds' }),
    ),
    etaSeconds: Type.Optional(
      Type.Union([Type.Integer({ minimum: 0 }), Type.Null()], {
        description: 'Seconds left at the recent throughput; null until the totals are known and bytes are moving',
      }),
    ),
    current: Type.Optional(
      Type.Union([Type.String(), Type.Null()], {
        description:
          'The entry being copied, restored or verified, relative to the source or snapshot, as display text ' +
          '(bytes that are not UTF-8 become U+FFFD); null when none',
      }),
    ),
  },
  {
    description:
      'How far the job has come. `bytesPerSecond`, `etaSeconds` and `current` are absent from the view of a job ' +
      'rebuilt from the log (one Redis no longer holds)',
  },
);
export type JobProgress = Static<typeof JobProgressSchema>;

/** One entry of a snapshot that does not match its manifest. */
export const SnapshotProblemSchema = Type.Object({
  ...displayedPath,
  problem: Type.Union([
    Type.Literal('missing'),
    Type.Literal('changed'),
    Type.Literal('extra'),
    Type.Literal('unreadable'),
  ]),
});
export type SnapshotProblem = Static<typeof SnapshotProblemSchema>;

/**
 * One line of a snapshot's manifest (`.coffer/<snapshot name>.manifest.ndjson` beside the
 * snapshot): one per entry below the snapshot root, the root itself excluded.
 */
export const ManifestEntrySchema = Type.Object({
  /** Relative to the snapshot root, `/`-separated. */
  ...displayedPath,
  type: Type.Union([Type.Literal('file'), Type.Literal('dir'), Type.Literal('link')]),
  /** Bytes: a file's length, a link's target length, 0 for a folder. */
  size: Type.Integer({ minimum: 0 }),
  /** Permission bits (`st_mode & 0o7777`). */
  mode: Type.Integer({ minimum: 0 }),
  /** Modification time in milliseconds since the epoch, with its fraction (microseconds kept). */
  mtime: Type.Number(),
  /** Files only: lowercase hex SHA-256 of the contents (absent only with `noData`). */
  sha256: Type.Optional(Type.String()),
  /**
   * Files only: the file holds no data at all, only a hole of `size` bytes (`truncate -s 10T`),
   * and is too large to hash its zeros in reasonable time (over 1 GiB); it is checked by its
   * size and by holding no blocks.
   */
  noData: Type.Optional(Type.Boolean()),
  /** Links only: the link's target text (and its bytes in base64 when not valid UTF-8). */
  target: Type.Optional(Type.String()),
  targetBase64: Type.Optional(Type.String()),
});
export type ManifestEntry = Static<typeof ManifestEntrySchema>;
