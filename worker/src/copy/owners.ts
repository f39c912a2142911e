import { errorCode } from './errno.js';

// setuid and setgid: privileges of the owner and group a file had, which its copy may not keep.
const SET_ID_BITS = 0o6000;

/** Whether copies get their source's owner and group: only root may give files away. */
export function keepsOwners(): boolean {
  return process.geteuid?.() === 0;
}

/**
 * The permission bits of a copy of an entry with `mode`: all of them, but setuid and setgid
 * only when the copy kept the owner and group they belong to, since they would otherwise
 * grant someone else's privileges (the process's, typically root's).
 */
export function copyMode(mode: number, ownerKept: boolean): number {
  return mode & (ownerKept ? 0o7777 : 0o7777 & ~SET_ID_BITS);
}

/** Whether `mode` holds setuid or setgid bits, which a change of owner clears. */
export function hasSetIdBits(mode: number): boolean {
  return (mode & SET_ID_BITS) !== 0;
}

/**
 * Runs `chown` (giving a copy its source's owner) and tells whether it took effect: false
 * when the file system or a user namespace refuses these ids (EPERM, EINVAL), as for a
 * process that is not root. The copy then keeps this process as its owner.
 */
export function tryChown(chown: () => void): boolean {
  try {
    chown();
    return true;
  } catch (error) {
    const code = errorCode(error);
    if (code === 'EPERM' || code === 'EINVAL') return false;
    throw error;
  }
}
