import fp from 'fastify-plugin';
import type { CofferConfig } from '@coffer/shared';

// Placeholder: the webhook dispatcher and delivery worker (being built).
export default fp<{ config: CofferConfig }>(async () => {}, { name: 'webhooks' });
