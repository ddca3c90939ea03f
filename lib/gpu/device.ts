/**
 * The one WebGPU device Arbor uses: requested once with the limits our kernels
 * need (up to the adapter's maxima), its adapter described for the user, and
 * uncaptured errors turned into loud failures instead of silent wrong numbers.
 */
import { ArborError } from "../errors.ts";

/** The device and what we know of the adapter behind it. */
export interface Gpu {
  device: GPUDevice;
  adapter: GPUAdapter;
  /** Human-readable adapter line, e.g. "llvmpipe (LLVM 15.0.6, 256 bits) [vulkan, fallback]". */
  description: string;
  /** True on software drivers (llvmpipe / lavapipe). */
  isFallback: boolean;
  /** Whether the device was created with `shader-f16`. */
  hasF16: boolean;
  /** Whether timestamp queries are available for GPU timing. */
  hasTimestamps: boolean;
  /**
   * The smallest subgroup size of the adapter when the device has the "subgroups" feature (WGSL
   * subgroup builtins), 0 without it.
   */
  subgroupSize: number;
}

/** Limits we raise to the adapter's maxima: big buffers and workgroup memory. */
const RAISED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxStorageBuffersPerShaderStage",
  "maxComputeWorkgroupsPerDimension",
] as const;

let cached: Promise<Gpu> | undefined;

/** Options for `getGpu`. */
export interface GpuOptions {
  /** Do not print the adapter line. */
  quiet?: boolean;
}

/** Thrown when no WebGPU adapter can be had; the message says how to get one. */
export class GpuUnavailableError extends ArborError {
  override name = "GpuUnavailableError";
}

/** Get (once per process) the WebGPU device, printing the adapter unless quiet. */
export function getGpu(options: GpuOptions = {}): Promise<Gpu> {
  if (!cached) {
    cached = createGpu(options).catch((e) => {
      cached = undefined;
      throw e;
    });
  }
  return cached;
}

async function createGpu(options: GpuOptions): Promise<Gpu> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new GpuUnavailableError(
      "WebGPU is not available in this Deno. Use Deno 2.x, and on a machine without a GPU " +
        "install Mesa's software drivers (apt-get install mesa-vulkan-drivers).",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new GpuUnavailableError(
      "no WebGPU adapter found. Install a Vulkan driver (apt-get install mesa-vulkan-drivers " +
        "for the software one) or set DENO_WEBGPU_BACKEND=gl.",
    );
  }
  const requiredLimits: Record<string, number> = {};
  for (const name of RAISED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[name];
    if (typeof v === "number") requiredLimits[name] = v;
  }
  const requiredFeatures: GPUFeatureName[] = [];
  const hasF16 = adapter.features.has("shader-f16");
  const hasTimestamps = adapter.features.has("timestamp-query");
  if (hasF16) requiredFeatures.push("shader-f16");
  if (hasTimestamps) requiredFeatures.push("timestamp-query");
  // Deno 2.9's lavapipe adapter grants "subgroups" without listing it in adapter.features (its GL
  // adapter refuses it with a TypeError), so ask for it and fall back to a device without.
  let device: GPUDevice;
  let hasSubgroups = true;
  try {
    device = await adapter.requestDevice({
      requiredLimits,
      requiredFeatures: [...requiredFeatures, "subgroups" as GPUFeatureName],
    });
  } catch (e) {
    if (!(e instanceof TypeError)) throw e;
    hasSubgroups = false;
    device = await adapter.requestDevice({ requiredLimits, requiredFeatures });
  }
  device.lost.then((info) => {
    if (info.reason !== "destroyed") {
      console.error(`arbor: GPU device lost: ${info.message}`);
    }
  });
  // deno-lint-ignore no-explicit-any
  const info = (adapter as any).info ?? {};
  const backend = Deno.env.get("DENO_WEBGPU_BACKEND") ?? "auto";
  const isFallback = Boolean(
    info.isFallbackAdapter ?? (adapter as { isFallbackAdapter?: boolean })
      .isFallbackAdapter,
  );
  const name = info.description || info.device || info.vendor || "unknown adapter";
  const description = `${name} [backend: ${backend}${isFallback ? ", software" : ""}]`;
  if (!options.quiet) console.error(`arbor: WebGPU adapter: ${description}`);
  const subgroupSize = hasSubgroups ? Number(info.subgroupMinSize ?? 0) : 0;
  return { device, adapter, description, isFallback, hasF16, hasTimestamps, subgroupSize };
}
