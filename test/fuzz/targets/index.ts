// Every fuzz target, in the order `npm run fuzz` runs them.
import type { FuzzTarget } from '../engine.ts';
import { configTarget } from './config.ts';
import { formatTargets } from './format.ts';
import { dashboardTarget, localApiTarget } from './local-api.ts';
import { storeTargets } from './store.ts';
import { wireTargets } from './wire.ts';

export const TARGETS: FuzzTarget[] = [...formatTargets, ...storeTargets, ...wireTargets, configTarget, localApiTarget, dashboardTarget];
