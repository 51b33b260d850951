// label: the field 'label' of each item of any type, as a Text, in order.

/** Read each item with the job's own types and send its label. */
export async function run(job) {
  for await (const item of job.inputs.value) await job.outputs.label.send({ text: item.label });
}
