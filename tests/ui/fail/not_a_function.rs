#[worker::handler]
struct Handler;

#[worker::init]
static MODEL: u32 = 0;
