/**
 * Counts free slots for work in flight. `acquire` resolves once a slot is free, so
 * a producer that awaits it is paced by the work it started.
 */
export class Semaphore {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(size: number) {
    if (!Number.isInteger(size) || size < 1) {
      throw new RangeError(`semaphore size must be a positive integer, got ${size}`);
    }
    this.#free = size;
  }

  async acquire(): Promise<void> {
    if (this.#free > 0) {
      this.#free -= 1;
      return;
    }
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  release(): void {
    const next = this.#waiting.shift();
    // The slot passes straight to a waiter, so it cannot be taken in between.
    if (next) next();
    else this.#free += 1;
  }
}
