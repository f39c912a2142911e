// Baseline for `POST /backup` throughput: a bare Fastify route that only queues the job.
import { Queue } from 'bullmq';
import Fastify from 'fastify';
import { Redis } from 'ioredis';

const port = Number(process.env.PORT);
const connection = new Redis(process.env.REDIS_URL ?? 'redis://127.0.0.1:6379', { enableOfflineQueue: false });
const queue = new Queue('backup', { connection, prefix: process.env.QUEUE_PREFIX });

const app = Fastify();
app.get('/ready', async () => ({ ok: true }));
app.post('/backup', async (request, reply) => {
  const job = await queue.add('backup', request.body);
  return reply.code(202).send({ id: job.id, status: 'queued' });
});

await connection.ping().catch(() => undefined);
await app.listen({ port, host: '127.0.0.1' });
process.once('SIGTERM', () => {
  void app.close().then(async () => {
    await queue.close();
    connection.disconnect();
  });
});
