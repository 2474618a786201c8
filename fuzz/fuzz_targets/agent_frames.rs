//! The agent protocol's frame decoder and messages, as either side reads
//! them from the other (a hostile guest, or a hostile host for the agent):
//! any bytes give frames or an error, never a panic or an unbounded
//! allocation.
#![no_main]
use banger_agent_proto::{read_frame, Request, Response};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
    rt.block_on(async {
        let mut r = data;
        while let Ok(Some(f)) = read_frame(&mut r).await {
            assert!(f.payload.len() <= banger_agent_proto::MAX_PAYLOAD);
            let _ = f.json::<Request>();
            let _ = f.json::<Response>();
            let _ = f.json::<serde_json::Value>();
        }
    });
});
