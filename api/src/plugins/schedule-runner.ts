import fp from 'fastify-plugin';
import type { CofferConfig } from '@coffer/shared';

// Being written: installs the schedules in Redis and queues their runs.
export default fp<{ config: CofferConfig }>(async () => {}, { name: 'schedule-runner' });
