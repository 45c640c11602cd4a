import type { Protocol } from '../model/flow.js';

/** A catalog as written in YAML, after schema validation (see catalog/schema.json). */
export type PeerSpec = string | { role: string; local: true } | { any: string };

export type PortSpec =
  | number
  | string
  | { 'per-drive': { fact: string; of: 'from' | 'to'; base: number; first: string; last: string } };

export type Condition =
  | { feature: string }
  | { fact: { of: 'from' | 'to'; name: string; is?: string | string[]; has?: string; given?: boolean } }
  | { setting: { name: string; is?: string; min?: string; max?: string } }
  | { 'role-present': string }
  | { 'role-absent': string }
  | { any: Condition[] }
  | { all: Condition[] }
  | { not: Condition };

/** A row of one of the catalog's seed documents. */
export interface DocumentRef {
  doc: string;
  table: string;
  row: number;
  ref?: string;
}

/** A public vendor page beyond the seed documents: the basis of an advisory entry. */
export interface PageRef {
  url: string;
  title: string;
  /** The date the page was read, YYYY-MM-DD. */
  read: string;
  ref?: string;
}

export type SourceRef = DocumentRef | PageRef;

export function isPageRef(s: SourceRef): s is PageRef {
  return 'url' in s;
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
  /**
   * `document` (the default): the entry comes from a seed document row. `advisory`: from a public
   * vendor page beyond the documents; planned only when the site asks for advisories.
   */
  basis?: 'document' | 'advisory';
  when?: Condition[];
  sources: SourceRef[];
  notes?: string[];
  'notes-ja'?: string[];
}

export interface FactSpec {
  values: string[];
  list?: boolean;
  default?: string;
  /** When the host does not give the fact, take the product setting of this name (with its default). */
  setting?: string;
  description?: string;
}

export interface SettingSpec {
  type: 'version' | 'string';
  values?: string[];
  default?: string;
  description?: string;
  examples?: string[];
  /** Where the values and version ranges come from (vendor pages, document rows). */
  sources?: SourceRef[];
  /** What the sources support, and which ranges are the catalog's own assumption. */
  notes?: string[];
  /**
   * For a setting with values: the versions (setting `version`) each value ever had, as inclusive
   * ranges; a site that gives a version outside its value's ranges is refused.
   */
  versions?: Record<string, { min?: string; max?: string }[]>;
}

/** A condition the catalog warns about (it plans nothing): per host in a role, or once per product. */
export interface CatalogWarning {
  id: string;
  /** Evaluated for each host in this role, the host being both `from` and `to`; once when absent. */
  role?: string;
  when: Condition[];
  /** `{host}` is replaced by the host's name. */
  message: string;
  /** The message in Japanese, shown with `--lang ja`; `{host}` as in `message`. */
  'message-ja'?: string;
  sources: SourceRef[];
}

export interface Catalog {
  product: string;
  title: string;
  'title-ja'?: string;
  description?: string;
  documents: { file: string; title: string; language?: 'en' | 'ja'; notes?: string[] }[];
  roles: Record<string, { title: string; 'title-ja'?: string; description?: string }>;
  facts?: Record<string, Record<string, FactSpec>>;
  features?: Record<string, { title: string; 'title-ja'?: string; description?: string }>;
  settings?: Record<string, SettingSpec>;
  entries: CatalogEntry[];
  warnings?: CatalogWarning[];
  /** Where it was loaded from (not part of the YAML). */
  file: string;
}
