from pathlib import Path

from pokedex_host.compile.memory import read_memory
from pokedex_host.kmodel.sched import parse_sched

MAIN = """.physical_buffer
%0(new_input)\t : <u8 [1,3,64,64] 12288 bytes of [1,3,64,64]> @input[0, 12288] life(0, 10)
%1(k210_0)\t : <u8 [1,513,2,2] 2052 bytes of [1,513,2,2]> @data[0, 2056] life(1, 11)
%2(k210_0)\t : <u8 [1,512,2,2] 2048 bytes of [1,512,2,2]> @data[2056, 4104] life(1, 12)
%3(/Concat(Concat))\t : <f32 [1,1025,2,2] 16400 bytes of [1,1025,2,2]> @data[4104, 20504] life(10, 13)
%4(/ReduceMean(reduce_mean))\t : <f32 [1,1025] 4100 bytes of [1,1025]> @output[0, 4104] life(12, 14)
"""
K210 = """.physical_buffer
%0(new_input)\t : <u8 [1,3,64,64] 12288 bytes of [1,3,64,64]> @input[0, 12288] life(2, 4)
%1(/c0/kpu_download)\t : <u8 [1,3,64,64] 12288 bytes of [1,3,64,64]> @unknown[0, 12288] life(3, 8)
%2(Constant_1)\t : <u8 [8,3,3,3] 216 bytes of [8,3,3,3]> @rdata[0, 216] life(4, 8)
%5(/c0/Conv(Conv))\t : <u8 [1,8,32,32] 8192 bytes of [1,8,32,32]> @unknown[12288, 20480] life(7, 12)
%9(out)\t : <u8 [1,513,2,2] 2052 bytes of [1,513,2,2]> @output[0, 2056] life(9, 12)

.compute_sequence
fn k210_0(%0) : (<u8 [1,3,64,64] 12288 bytes of [1,3,64,64]>) -> ()
{
    %5 = KPUConv2D(%1, %2, %3, %4) : (<u8 [1,3,64,64] 12288 bytes of [1,3,64,64]>) -> (<u8 [1,8,32,32] 8192 bytes>)
}
"""


def _dump(tmp_path: Path) -> Path:
    d = tmp_path / "dump"
    (d / "codegen").mkdir(parents=True)
    (d / "codegen" / "main.sched").write_text(MAIN)
    (d / "codegen" / "k210_0.sched").write_text(K210)
    (d / "stackvm" / "main").mkdir(parents=True)
    (d / "stackvm" / "main" / "runtime_ops.txt").write_text("[Call] k210_0\n[Reduce] /ReduceMean(reduce_mean)\n")
    (d / "kmodel_info.txt").write_text(
        "\nMEMORY USAGES\ninput:   12.00 KB\t(12288 B)\noutput:  4.00 KB\t(4100 B)\n"
        "data:   20.02 KB\t(20504 B)\nMODEL:    1.00 KB\t(1000 B)\n"
    )
    return d


def test_sched_parsing(tmp_path):
    bufs, convs = parse_sched(_dump(tmp_path) / "codegen" / "k210_0.sched")
    assert [b.segment for b in bufs] == ["input", "unknown", "rdata", "unknown", "output"]
    assert bufs[3].shape == (1, 8, 32, 32) and bufs[3].end == 20480
    assert convs == [(5, [1, 2, 3, 4])]


def test_memory_figures_come_from_the_entry_function_and_the_kpu_segment(tmp_path):
    d = _dump(tmp_path)
    k = tmp_path / "m.kmodel"
    k.write_bytes(b"\0" * 1000)
    mem = read_memory(d, k)
    assert mem.input_bytes == 12288
    assert mem.output_bytes == 4104  # main's output, not the KPU module's
    assert mem.data_bytes == 20504
    assert mem.kpu_peak == 20480
    assert mem.runtime_total == 1000 + 20504 + 12288 + 4104
    assert [(lay.name, lay.in_bytes, lay.out_bytes) for lay in mem.kpu_layers] == [("/c0/Conv(Conv)", 12288, 8192)]
    assert mem.cpu_ops == [("Reduce", "/ReduceMean")]
    assert mem.crosscheck == []


def test_crosscheck_reports_a_disagreeing_kmodel_info(tmp_path):
    d = _dump(tmp_path)
    (d / "kmodel_info.txt").write_text("MEMORY USAGES\ndata:   40.00 KB\t(40960 B)\n")
    k = tmp_path / "m.kmodel"
    k.write_bytes(b"\0" * 10)
    assert read_memory(d, k).crosscheck == ["data: schedule says 20,504 B, kmodel_info.txt says 40,960 B"]
