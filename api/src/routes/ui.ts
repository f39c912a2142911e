import type { FastifyPluginAsync } from 'fastify';

// Placeholder (being built).
const routes: FastifyPluginAsync<any> = async () => {};
export default routes;
