import type { FastifyPluginAsync } from 'fastify';
import type { CofferConfig } from '@coffer/shared';

// Being written.
const routes: FastifyPluginAsync<{ config: CofferConfig }> = async () => {};

export default routes;
