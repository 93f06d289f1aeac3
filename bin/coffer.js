#!/usr/bin/env node
// Installed entry point: loads the TypeScript CLI through tsx (a runtime dependency).
import { register } from 'tsx/esm/api';

register();
await import('./coffer.ts');
