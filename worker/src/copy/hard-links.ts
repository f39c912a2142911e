import fs from 'node:fs';
import { threadId } from 'node:worker_threads';
import { errorCode } from './errno.js';

/** The scratch folder where a copy into `target` registers its hard links: beside it, removed by `copyTree`. */
export function linkRegistryOf(target: string): string {
  return `${target}.links`;
}

/**
 * The first copy of each source inode that has several names, shared by every thread of one
 * copy (threads do not share memory, but share the file system): entry `<dev>-<ino>` is a hard
 * link to that copy, so later names become links to it and the copy keeps the source's hard
 * links. The folder is created when the first such file is met.
 */
export class LinkRegistry {
  readonly #folder: string;

  constructor(folder: string) {
    this.#folder = folder;
  }

  /** Makes `to` a hard link to the registered copy of inode `key`; false when there is none yet. */
  linkRegistered(key: string, to: Buffer): boolean {
    try {
      fs.linkSync(this.#entry(key), to);
      return true;
    } catch (error) {
      const code = errorCode(error);
      // EMLINK: the copy has as many names as its file system allows; this one stays a copy.
      if (code === 'ENOENT' || code === 'EMLINK') return false;
      throw error;
    }
  }

  /**
   * Registers `to`, a complete copy, as the copy of inode `key`, with its `checksum` (or where
   * to find it) when the copy has a manifest. When another thread registered its own copy
   * first, `to` is replaced by a link to that one, and the answer is false.
   */
  register(key: string, to: Buffer, checksum?: string): boolean {
    const entry = this.#entry(key);
    for (let created = false; ; created = true) {
      try {
        fs.linkSync(to, entry);
        // After the link: a later name may be linked before this is written, but its manifest
        // line looks the checksum up only once every thread is done (see manifest-assembly.ts).
        if (checksum !== undefined) fs.writeFileSync(checksumFileOf(entry), checksum, { mode: 0o600 });
        return true;
      } catch (error) {
        const code = errorCode(error);
        if (code === 'ENOENT' && !created) {
          this.#create();
        } else if (code === 'EEXIST') {
          // Possibly right after making the folder: another thread may have made it and registered first.
          return !this.#replaceByRegistered(entry, to);
        } else if (code === 'EMLINK') {
          // `to` (a previous snapshot's file) has as many names as allowed: it stays, unregistered.
          return true;
        } else {
          throw error;
        }
      }
    }
  }

  /**
   * Replaces `to` by a link to the registered copy `entry`; false when that copy has as many
   * names as its file system allows, and `to` stays. Atomically, so `to` is never missing: a
   * link made beside the registry, renamed over `to`.
   */
  #replaceByRegistered(entry: string, to: Buffer): boolean {
    // One name per thread: a thread registers one file at a time.
    const spare = `${entry}.${threadId}`;
    try {
      fs.linkSync(entry, spare);
    } catch (error) {
      if (errorCode(error) === 'EMLINK') return false;
      throw error;
    }
    fs.renameSync(spare, to);
    return true;
  }

  /** What `register` recorded as the checksum of the registered copy of inode `key`. */
  recordedChecksum(key: string): string {
    return fs.readFileSync(checksumFileOf(this.#entry(key)), 'latin1');
  }

  #create(): void {
    try {
      fs.mkdirSync(this.#folder, { mode: 0o700 });
    } catch (error) {
      // Another thread made it first.
      if (errorCode(error) !== 'EEXIST') throw error;
    }
  }

  #entry(key: string): string {
    return `${this.#folder}/${key}`;
  }
}

// Beside its entry, under a name no entry or spare link (`<entry>.<thread id>`) can have.
function checksumFileOf(entry: string): string {
  return `${entry}.sum`;
}
