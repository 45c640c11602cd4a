import type { Address } from '../model/address.js';

export interface RoleRef {
  product: string;
  role: string;
}

export interface Host {
  name: string;
  address: Address;
  roles: RoleRef[];
  facts: Record<string, string | string[]>;
  description?: string;
}

export interface ProductUse {
  features: Set<string>;
  /** Only the settings the inventory gives; defaults are applied when planning. */
  settings: Record<string, string>;
}

/** A site inventory after validation: everything in it is known to the catalogs. */
export interface Inventory {
  file: string;
  site: string;
  products: Map<string, ProductUse>;
  hosts: Host[];
  /** Extra catalog paths, resolved against the inventory's directory. */
  catalogs: string[];
  /** `advisories: include`: plan the catalogs' advisory entries as flows. */
  advisories?: boolean;
  /** SHA-256 of the file's bytes, for generated-file headers. */
  sha256: string;
}
