import { JOB_STATUSES, type LogRow } from '@coffer/shared';
import { viewFromLog, type JobView } from '../jobs/job-view.js';
import { isWebhookEvent, type WebhookEvent, type WebhookRecord } from './webhook-store.js';

/** The BullMQ queue of deliveries (its own, so a slow receiver never holds a backup). */
export const WEBHOOK_QUEUE = 'webhooks';
export const DELIVERY_JOB = 'deliver';

/** How long a log row stays worth delivering after it was written: older rows a late event carries are left. */
export const FRESH_MS = 6 * 3600_000;

/** What a delivery job carries: everything an attempt needs but the webhook's URL and secret. */
export interface DeliveryData {
  webhookId: number;
  logRowId: number;
  jobId: string;
  event: WebhookEvent;
  /** The JSON body, signed anew at each attempt. */
  body: string;
}

/** The JSON body of a delivery. */
export interface DeliveryEnvelope {
  /** The delivery's id, as Coffer-Delivery sends it: `<webhookId>-<logRowId>`, the same on every attempt. */
  id: string;
  /** The job's status at this transition (a job status the webhook subscribed to). */
  event: WebhookEvent;
  webhookId: number;
  /** The log row of the transition (GET /logs; the event streams' ids). */
  logRowId: number;
  /** When the log recorded the transition. */
  occurredAt: string;
  /** The job's view (as GET /jobs/{id} answers it) at this transition. */
  job: JobView;
}

/** The BullMQ job id of the delivery of log row `logRowId` to webhook `webhookId`: one per pair, across replicas. */
export function deliveryId(webhookId: number, logRowId: number): string {
  return `${webhookId}-${logRowId}`;
}

const isJobStatus = (row: LogRow) => (JOB_STATUSES as readonly string[]).includes(row.status);

/**
 * The job's view at the transition `history[index]`: the event's own view for the job's newest
 * transition (it has the live fields, progress and attempts, Redis had), else the view the log
 * gives up to that row, so a transition is never told with a later state.
 */
export function viewAt(history: readonly LogRow[], index: number, view: JobView | null): JobView | null {
  const row = history[index];
  if (!row) return null;
  const newest = !history.slice(index + 1).some(isJobStatus);
  if (newest && view && view.status === row.status) return view;
  return viewFromLog(history.slice(0, index + 1)) ?? (newest ? view : null);
}

/**
 * The deliveries one job event leads to: one per row of the job's log that a webhook wants, written
 * since the webhook was created and within FRESH_MS. The same row gives the same delivery id on
 * every event and every replica, so the queue takes it once.
 */
export function deliveriesOf(
  event: { jobId: string; history: readonly LogRow[]; view: JobView | null },
  webhooks: readonly WebhookRecord[],
  now = Date.now(),
): DeliveryData[] {
  const deliveries: DeliveryData[] = [];
  event.history.forEach((row, index) => {
    if (row.jobId === null || !isWebhookEvent(row.status)) return;
    if (now - row.date.getTime() > FRESH_MS) return;
    const status = row.status;
    const wanting = webhooks.filter((w) => w.events.includes(status) && row.date.getTime() >= w.createdAt.getTime());
    if (wanting.length === 0) return;
    const job = viewAt(event.history, index, event.view);
    if (!job) return;
    for (const webhook of wanting) {
      const envelope: DeliveryEnvelope = {
        id: deliveryId(webhook.id, row.id),
        event: status,
        webhookId: webhook.id,
        logRowId: row.id,
        occurredAt: row.date.toISOString(),
        job,
      };
      deliveries.push({
        webhookId: webhook.id,
        logRowId: row.id,
        jobId: row.jobId,
        event: status,
        body: JSON.stringify(envelope),
      });
    }
  });
  return deliveries;
}
