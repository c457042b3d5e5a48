// Preloaded by a whole-suite run with test knobs set in the environment (e.g.
// FERRY_TEST_TREE_PAGE_MIN=2 to page every directory over two entries:
// docs/testing.md): the test processes install them as `ferry` processes do
// (cli/main.ts), so that in-process captures agree with the daemons'.
import { installTestKnobs, testKnobsFromEnv } from '../../src/core/test-knobs.ts';

installTestKnobs(testKnobsFromEnv(process.env));
