fn main() {
    println!("{}", netmon::kernel::loader::EBPF_OBJECT.len());
}
