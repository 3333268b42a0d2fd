"""The load-balancing peer: what RunPod's load-balancing template deploys (FastAPI on
uvicorn, one process) with the same echo handler as ours, RunPod's envelope in and out."""

import os
import uuid

import uvicorn
from fastapi import FastAPI, Request

app = FastAPI()


@app.get("/ping")
async def ping():
    return {"status": "healthy"}


@app.post("/runsync")
async def runsync(request: Request):
    body = await request.json()
    return {"id": str(uuid.uuid4()), "status": "COMPLETED", "output": body["input"]}


if __name__ == "__main__":
    uvicorn.run(app, host="127.0.0.1", port=int(os.environ.get("PORT", "80")))
