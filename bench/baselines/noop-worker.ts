// Baseline for end-to-end jobs: a BullMQ worker that does nothing but write one row per job.
import { Worker } from 'bullmq';
import { Redis } from 'ioredis';
import { createPool } from 'mysql2/promise';

const concurrency = Number(process.env.WORKER_CONCURRENCY ?? 1);
const pool = createPool({
  host: process.env.MYSQL_HOST,
  port: Number(process.env.MYSQL_PORT),
  user: process.env.MYSQL_USER,
  password: process.env.MYSQL_PASSWORD,
  database: process.env.MYSQL_DATABASE,
  connectionLimit: Math.max(2, concurrency),
});
const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { maxRetriesPerRequest: null });

const worker = new Worker<{ source: string }>(
  'backup',
  async (job) => {
    await pool.execute('INSERT INTO log (action, parameter, status, job_id) VALUES (?, ?, ?, ?)', [
      'backup',
      job.data.source,
      'completed',
      job.id ?? null,
    ]);
  },
  { connection, prefix: process.env.QUEUE_PREFIX, concurrency },
);
worker.on('error', (err) => console.error(err));
await worker.waitUntilReady();
console.log('worker started');
process.once('SIGTERM', () => {
  void worker.close().then(async () => {
    connection.disconnect();
    await pool.end();
  });
});
