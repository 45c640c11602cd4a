import type { Protocol } from '../model/flow.js';

/** A catalog as written in YAML, after schema validation (see catalog/schema.json). */
export type PeerSpec = string | { role: string; local: true } | { any: string };

export type PortSpec =
  | number
  | string
  | { 'per-drive': { fact: string; of: 'from' | 'to'; base: number; first: string; last: string } };

export type Condition =
  | { feature: string }
  | { fact: { of: 'from' | 'to'; name: string; is?: string | string[]; has?: string } }
  | { setting: { name: string; is?: string; min?: string; max?: string } }
  | { 'role-present': string }
  | { 'role-absent': string }
  | { any: Condition[] }
  | { all: Condition[] }
  | { not: Condition };

export interface SourceRef {
  doc: string;
  table: string;
  row: number;
  ref?: string;
}

export interface CatalogEntry {
  id: string;
  from: PeerSpec;
  to: PeerSpec;
  protocol: Protocol;
  ports?: PortSpec[];
  'icmp-type'?: 'echo-request' | 'any';
  service: string;
  tls?: boolean;
  /** The ports are assigned at run time: nothing listening on most of them is normal. */
  'dynamic-ports'?: boolean;
  security?: string;
  purpose: string;
  'purpose-ja'?: string;
  when?: Condition[];
  sources: SourceRef[];
  notes?: string[];
  'notes-ja'?: string[];
}

export interface FactSpec {
  values: string[];
  list?: boolean;
  default?: string;
  description?: string;
}

export interface SettingSpec {
  type: 'version' | 'string';
  values?: string[];
  default?: string;
  description?: string;
}

export interface Catalog {
  product: string;
  title: string;
  'title-ja'?: string;
  description?: string;
  documents: { file: string; title: string; language?: 'en' | 'ja'; notes?: string[] }[];
  roles: Record<string, { title: string; 'title-ja'?: string; description?: string }>;
  facts?: Record<string, Record<string, FactSpec>>;
  features?: Record<string, { title: string; description?: string }>;
  settings?: Record<string, SettingSpec>;
  entries: CatalogEntry[];
  /** Where it was loaded from (not part of the YAML). */
  file: string;
}
