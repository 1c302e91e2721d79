import { memoryLimitWarning } from '../src/observability/memory-limit';

const MB = 2 ** 20;
const MACHINE = 24 * 1024 * MB;
// V8's heap limit with the start command's flags: 256 MB old generation, 3 × 8 MB young.
const HEAP_LIMIT = 280 * MB;

describe('memoryLimitWarning', () => {
  it('warns when the limit leaves less than about 100 MB beside the heap limit', () => {
    expect(memoryLimitWarning(256 * MB, HEAP_LIMIT, MACHINE)).toBe(
      "the memory limit (256 MB) is below V8's heap limit plus about 100 MB outside the heap " +
        '(380 MB): under load the kernel may kill the broker before V8 collects; raise the ' +
        'limit, or lower --max-old-space-size',
    );
  });

  it('is quiet at the limit the README asks for, and above it', () => {
    expect(memoryLimitWarning(384 * MB, HEAP_LIMIT, MACHINE)).toBeUndefined();
    expect(memoryLimitWarning(2048 * MB, HEAP_LIMIT, MACHINE)).toBeUndefined();
  });

  it('is quiet without a limit: none reported, or one beyond the machine', () => {
    expect(memoryLimitWarning(0, HEAP_LIMIT, MACHINE)).toBeUndefined();
    expect(memoryLimitWarning(2 ** 64, HEAP_LIMIT, MACHINE)).toBeUndefined();
  });
});
