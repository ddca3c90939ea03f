/** Open a safetensors weights file (lib/format/safetensors.ts) as a `TensorSource` for the loader. */
import { readSafetensors } from "../format/safetensors.ts";
import type { TensorSource } from "./weights.ts";

/** Read a safetensors file into memory and expose its tensors by name. */
export async function openSafetensors(file: string): Promise<TensorSource> {
  const st = await readSafetensors(file);
  return {
    file,
    names: () => st.names(),
    get(name) {
      if (!st.has(name)) return undefined;
      const info = st.info(name);
      return { dtype: info.dtype, shape: info.shape, toF32: () => st.f32(name) };
    },
  };
}
